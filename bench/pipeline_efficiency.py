"""Does the input pipeline keep up? The full training loop vs the bare step on in-memory batches.

  python bench/pipeline_efficiency.py [--variant=cpu] [--epochs=1] [--json PATH]

Same config, data, batches and jitted step (`configs/wler.py:<variant>`): (a) the loop `main`
runs (grain reading + padding in threads, `prefetch_to_device`, the train step), (b) the same
epoch's batches already on the device, steps only. Every batch shape is compiled first (a
warm-up epoch), so neither side pays for compilation. Efficiency = loop rate / bare rate.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "configs"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="cpu")
    parser.add_argument("--method", default="wler", choices=("wler", "slat"))
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--epoch", type=int, default=1, help="which epoch's batches to time")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import jax
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from common import base_config
    from wler_jax import data, input_pipeline as ip, steps, train

    config = base_config(args.method, args.variant)
    if args.data_dir:
        config.data.data_dir = args.data_dir
    sources, class_names, _ = data.load(config)
    mesh = Mesh(np.array(jax.devices()), ("data",))
    sharding = NamedSharding(mesh, P("data"))
    batcher = ip.RecordingBatcher(sources["train"], num_classes=len(class_names),
                                  frame_budget=config.input.frame_budget,
                                  num_devices=jax.device_count(), ratio=config.input.bucket_ratio,
                                  seed=config.seed)
    model = train.create_model(config, len(class_names))
    tx = steps.make_optimizer(config.train.optimizer, config.train.learning_rate)
    state = steps.TrainState.create(apply_fn=None, params=train.init_params(
        model, jax.random.key(0)), tx=tx)
    state = jax.device_put(state, NamedSharding(mesh, P()))
    step = jax.jit(steps.make_train_step(model, config.method, slat_hop=config.input.slat_hop,
                                         base_rng=jax.random.key(1),
                                         scales_per_step=config.train.scales_per_step),
                   donate_argnums=0)

    def loop(batches):
        nonlocal state
        n, t0 = 0, time.perf_counter()
        for batch in batches:
            state, _ = step(state, batch)
            n += 1
        jax.block_until_ready(state)
        return n, time.perf_counter() - t0

    def pipeline():
        return ip.prefetch_to_device(ip.train_batches(
            sources["train"], batcher, args.epoch, prefetch=config.input.prefetch,
            num_threads=config.input.num_threads), config.input.prefetch, sharding)

    loop(pipeline())  # warm-up: compiles every bucket shape
    in_memory = [jax.device_put(b, sharding) for b in ip.train_batches(
        sources["train"], batcher, args.epoch, prefetch=0)]
    jax.block_until_ready(in_memory)
    audio_s = sum(float(np.sum(np.asarray(b["num_samples"]))) for b in in_memory) / 44_100
    n_full, t_full = loop(pipeline())
    n_bare, t_bare = loop(in_memory)
    result = {"device": jax.devices()[0].device_kind, "devices": jax.device_count(),
              "variant": args.variant, "method": args.method, "steps": n_full,
              "loop_s": t_full, "bare_s": t_bare, "loop_steps_per_s": n_full / t_full,
              "bare_steps_per_s": n_bare / t_bare, "efficiency": t_bare / t_full,
              "loop_audio_s_per_s": audio_s / t_full, "bare_audio_s_per_s": audio_s / t_bare,
              "load_average": os.getloadavg()}
    print(f"{'':22}{'steps/s':>10}{'audio-s/s':>12}{'epoch s':>10}")
    print(f"{'full training loop':22}{n_full / t_full:10.2f}{audio_s / t_full:12.1f}{t_full:10.2f}")
    print(f"{'bare step, in memory':22}{n_bare / t_bare:10.2f}{audio_s / t_bare:12.1f}{t_bare:10.2f}")
    print(f"input-pipeline efficiency: {100 * t_bare / t_full:.1f} % of the bare step rate")
    out = args.json or os.path.join(REPO, "bench", "results", "pipeline_efficiency_"
                                    f"{result['device'].replace(' ', '_')}_{args.variant}.json")
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
