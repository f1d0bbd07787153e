"""What the benchmarks compute from training runs and sweeps, importable so that tests check it
without `bench/`: summary statistics over seeds (`stats`), the synthetic WLER-vs-SLAT sweep's
merge (`compare_sweeps`), the real benchmark's run naming, scoring and sweep summaries
(`real_scoring`, `real_sweeps`), paired recordings-level comparisons of two runs (`paired`) and
dead / always-on unit counts (`unit_activity`). The `bench/` scripts are command lines over these.
"""
