"""The training budget behind each bundled model, as a markdown table (for the README).

    python scripts/zoo_budget.py

Steps, CPU hours and GPU minutes add up along the chain of runs a model was initialised from; every number is
read from what attncomp-train recorded in the weights file.
"""

from attncomp.models import ZOO, available_qualities, zoo


def on_gpu(run: dict) -> bool:
    return not str(run.get("hardware", "CPU")).startswith("CPU")


def main():
    print("| model | quality | λ | steps (total) | CPU hours | GPU minutes | runs | crops | precision | seed | hardware |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in ZOO:
        qualities = available_qualities(name)
        variable_rate = zoo.entry(name).variable_rate  # one file for every quality
        for quality in [None] if variable_rate and qualities else qualities:
            payload = zoo.read_weights(zoo.bundled_weights(name, quality))
            runs = zoo.training_chain(payload["training"])
            steps = sum(r.get("steps", 0) for r in runs)
            gpu = sum(r.get("hours", 0.0) for r in runs if on_gpu(r))
            cpu = sum(r.get("hours", 0.0) for r in runs if not on_gpu(r))
            newest = payload["training"]
            label, lmbda = (quality, payload["lmbda"]) if quality else (f"1–{len(qualities)}", "each level's")
            print(f"| {name} | {label} | {lmbda} | {steps} | {cpu:.2f} | {gpu * 60:.1f} | {len(runs)} "
                  f"| {newest.get('batch_size')}×{newest.get('crop_size')}² | {newest.get('precision')} "
                  f"| {newest.get('seed', '—')} | {newest.get('hardware')} |")


if __name__ == "__main__":
    main()
