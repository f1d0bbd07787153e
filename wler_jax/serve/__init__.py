"""A web page and a JSON endpoint around one trained model: `python -m wler_jax.serve`.

    python -m wler_jax.serve --workdir=W [--port=8000] [--host=127.0.0.1] [--max_upload_mb=64]
        [--max_seconds=600] [--threshold=T] [--workers=2] [--chunk_frames=2048]

Open http://127.0.0.1:8000/, upload a recording (or record one from the microphone) and see
its clip tags, the segment-score heat map over time and the event timeline. Scripts post the
file's bytes instead::

    curl -H 'Content-Type: audio/wav' --data-binary @rec.wav 'http://127.0.0.1:8000/api/predict?name=rec.wav'

and get the JSON document `python -m wler_jax.predict --output=X.json` writes for that one file.
Modules: `uploads` (limits, checks, scoring through `wler_jax.predict`, warm-up and the compile
counter), `app` (the Starlette routes), `page` (the HTML), `__main__` (flags). Needs the `serve`
extra (starlette, uvicorn); like all serving code it never imports training, config or data code.
"""
