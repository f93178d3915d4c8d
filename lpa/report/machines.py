"""The machines behind a suite's records, for the report's header.

Seeded runs repeat bit for bit only on the same kind of processor, so the header says which
machine made which trials: the model and instruction set lpa.train.machine records in each
config.json's `environment` (a GPU and its compute capability, or a CPU, its ISA and AMX).

    machine_label(environment)    "AMD EPYC (AVX512)", "NVIDIA H100 (compute capability 9.0)", ...
    machines_sentence(records)    "Machines: AMD EPYC (AVX512): all 4 trials."
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

NOT_RECORDED = "not recorded"


def machine_label(environment: Mapping | None) -> str:
    """One machine kind, from a config.json `environment`: the GPU and its compute capability when
    the run was on CUDA, else the CPU model and its ISA (with "+AMX" where it has AMX tiles).
    A record written before machines were recorded is NOT_RECORDED, with its device when it has one."""
    env = environment or {}
    if env.get("gpu"):
        return f"{env['gpu']} (compute capability {env.get('gpu_capability', '?')})"
    if env.get("cpu"):
        isa = str(env.get("cpu_isa") or "ISA unknown") + ("+AMX" if env.get("amx") else "")
        return f"{env['cpu']} ({isa})"
    return f"{NOT_RECORDED} (device: {env['device']})" if env.get("device") else NOT_RECORDED


def machines_sentence(records: Sequence[Mapping]) -> str:
    """"Machines: LABEL: trials; LABEL: trials." for trial records (lpa.report.records.load_trial:
    `trial` and `config` with its `environment`), machines in order of first appearance; one machine
    behind every trial is "all N trials" (or "the one trial") rather than the list."""
    if not records:
        return "Machines: none (no trials)."
    trials_by_machine: dict[str, list[str]] = {}
    for record in records:
        config = record["config"]
        label = machine_label(config.get("environment"))
        trials_by_machine.setdefault(label, []).append(str(record.get("trial") or config.get("trial") or config["run"]))
    if len(trials_by_machine) == 1:
        (label,) = trials_by_machine
        return f"Machines: {label}: " + (f"all {len(records)} trials." if len(records) > 1 else "the one trial.")
    return "Machines: " + "; ".join(f"{label}: {', '.join(trials)}" for label, trials in trials_by_machine.items()) + "."
