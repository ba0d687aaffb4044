"""One cell (configuration x seed): train -> generate -> evaluate, each stage skipped when done.

Each stage's key hashes everything that determines its output, chained through the stages, so a
changed setting redoes exactly the stages it affects. A finished cell is recognised from its markers
alone, without importing torch, and nothing is rewritten.
"""

from __future__ import annotations

import fcntl
import logging
import os
import platform
import shutil
import socket
import time
import traceback
from importlib import metadata
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from . import __version__
from .config import factors, to_yaml
from .devices import numerics_identity
from .store import (
    STAGES,
    RunDir,
    adopt,
    atomic_write_json,
    atomic_write_parquet,
    atomic_write_text,
    content_key,
    file_sha256,
    find_donor,
    is_done,
    read_json,
    run_done,
    write_marker,
)

log = logging.getLogger("lycobench")
LIBRARIES = ("torch", "diffusers", "transformers", "lycoris-lora", "open_clip_torch", "numpy")


def versions() -> dict[str, str]:
    out = {"lycobench": __version__, "python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = "absent"
    return out


def one_line(exc: BaseException) -> str:
    """What went wrong in one line (FAILED's ``error:``, status, the sweep's summary): every problem of an
    input error, else the exception's type and first line."""
    from .data import InputError

    if isinstance(exc, InputError):
        return "; ".join(exc.problems)
    first = next((ln for ln in str(exc).splitlines() if ln.strip()), "")
    return f"{type(exc).__name__}: {first}".rstrip(": ")


def classify(exc: BaseException) -> str:
    """The failure causes of the reliability reference: data | oom | nan | timeout | preempted | bug."""
    from .data import InputError

    if isinstance(exc, InputError | FileNotFoundError):
        return "data"
    if getattr(exc, "cause", None):
        return exc.cause
    if type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower():
        return "oom"
    return "bug"


class InjectedFault(RuntimeError):
    cause = "injected"


def inject_fault(stage: str, cell: str, seed: int) -> None:
    """Test hook: LYCOBENCH_FAULT="<stage>:<cell>[:<seed>]" (comma-separated) makes that stage raise."""
    for spec in filter(None, os.environ.get("LYCOBENCH_FAULT", "").split(",")):
        parts = spec.split(":")
        if parts[0] == stage and parts[1] == cell and (len(parts) < 3 or int(parts[2]) == seed):
            raise InjectedFault(f"fault injected by LYCOBENCH_FAULT={spec!r} at the start of {stage}")


def data_fingerprint(concepts) -> list:
    return [
        [c.name, c.category, c.trigger, c.class_word]
        + [
            [leaf.name, leaf.keyword, [[file_sha256(it.image), it.caption] for it in leaf.items]]
            for leaf in c.leaves
        ]
        for c in concepts
    ]


class Cell:
    def __init__(self, cfg: DictConfig, sweep_dir: Path, concepts: list | None = None):
        """``concepts``: the loaded (validated) ``cfg.concepts``, when the caller has them already."""
        from .data import all_leaves, load_concepts
        from .image_policy import IMAGE_POLICY
        from .metric_encoders import encoders_identity
        from .metrics import definitions
        from .models import model_identity
        from .prompts import plan_for, template_sources

        self.cfg = cfg
        self.sweep_dir = Path(sweep_dir)
        self.rd = RunDir.of(self.sweep_dir, cfg.cell, cfg.seed)
        self.concepts = concepts if concepts is not None else load_concepts(list(cfg.concepts))
        self.leaves = all_leaves(self.concepts)
        g = cfg.generate
        self.plan = plan_for(g, self.leaves)
        self.templates = template_sources(self.plan)  # version + sha256 of every template file used
        self.model_key = content_key(model_identity(cfg.model))
        c = lambda node: OmegaConf.to_container(node, resolve=True)  # noqa: E731
        train_key = content_key(
            {
                "model": self.model_key,
                "adapter": c(cfg.adapter),
                "target": c(cfg.target),
                "train": numerics_identity(c(cfg.train), "train"),
                "seed": int(cfg.seed),
                "data": data_fingerprint(self.concepts),
                "image_policy": IMAGE_POLICY,  # how the training images were read
                "versions": versions(),
                **external_adapter_key(cfg),
            }
        )
        gen_key = content_key(
            {
                "train": train_key,
                "generate": numerics_identity(c(g), "generate"),
                "plan": [p.__dict__ for p in self.plan],
                # the plan holds every prompt and expectation; a template file's version, not its bytes,
                # so that editing a comment regenerates nothing
                "templates": {src: t["version"] for src, t in self.templates.items()},
            }
        )
        eval_key = content_key(
            {
                "generate": gen_key,
                "evaluate": c(cfg.evaluate),
                "metrics": definitions(),
                "encoders": encoders_identity(cfg.encoders),
            }
        )
        self.keys = {"train": train_key, "generate": gen_key, "evaluate": eval_key}

    def done(self, stage: str) -> bool:
        return is_done(self.rd.marker(stage), self.keys[stage], self.rd.root)

    def to_run(self) -> list[str]:
        """The stages to (re)run. A stage whose files were released after the run finished (``lycobench
        prune``) is redone only when a later stage that reads them has to run: then they are needed back."""
        need, inputs_needed = [], False
        for stage in reversed(STAGES):
            loose = is_done(self.rd.marker(stage), self.keys[stage], self.rd.root, released_ok=True)
            if not loose or (inputs_needed and not self.done(stage)):
                need.append(stage)
            inputs_needed = stage in need
        return [s for s in STAGES if s in need]

    def run(self) -> str:
        """Run the stages that are not done; returns 'skipped', 'done' or 'busy' (another process holds the
        run's lock: it is running this cell). Writes FAILED and re-raises on error."""
        if run_done(self.rd.root, self.keys):
            self.record_done()
            return "skipped"
        rd = self.rd
        rd.root.mkdir(parents=True, exist_ok=True)
        with open(rd.root / ".lock", "a") as lock:
            try:  # held until this attempt ends; the OS releases it when the process dies (kill -9 too)
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.warning(
                    "[%s seed=%s] another process is running this cell: left to it",
                    self.cfg.cell,
                    self.cfg.seed,
                )
                return "busy"
            return self._run_locked()

    def record_done(self) -> None:
        """A run whose every marker is valid but whose record says otherwise (an attempt with other settings
        was interrupted or failed, then these settings were asked again): the record is made to agree."""
        rd = self.rd
        info = read_json(rd.run_json) if rd.run_json.is_file() else {}
        if info.get("keys") == self.keys and info.get("status") == "done" and not rd.failed.is_file():
            return
        atomic_write_text(rd.config, to_yaml(self.cfg))
        atomic_write_json(rd.run_json, {**self.run_info("done"), **self.kept_record()})
        rd.failed.unlink(missing_ok=True)

    def kept_record(self) -> dict:
        """What the record says of every stage that stays done (same key): its time, and where it was
        adopted from if another sweep did it. A rerun that redoes only the evaluation keeps both, so the
        run's record stays whole."""
        try:
            old = read_json(self.rd.run_json)
        except (OSError, ValueError):
            return {"seconds": {}}
        kept = set(STAGES) - set(self.to_run())
        same = {s for s in kept if (old.get("keys") or {}).get(s) == self.keys[s]}
        out = {"seconds": {s: v for s, v in (old.get("seconds") or {}).items() if s in same}}
        reused = {s: v for s, v in (old.get("reused") or {}).items() if s in same}
        return {**out, "reused": reused} if reused else out

    def _run_locked(self) -> str:
        rd = self.rd
        for stale in rd.root.rglob(".*.tmp"):  # temp files of a killed earlier attempt at this cell
            stale.unlink(missing_ok=True)
        text = to_yaml(self.cfg)
        if not rd.config.is_file() or rd.config.read_text(encoding="utf-8") != text:
            atomic_write_text(rd.config, text)
        info = self.run_info("running")
        info.update(self.kept_record())
        atomic_write_json(rd.run_json, info)
        try:
            to_run = self.to_run()
            for stage in STAGES:
                if stage not in to_run:
                    log.info("[%s seed=%s] %s: already done", self.cfg.cell, self.cfg.seed, stage)
                    continue
                t0 = time.perf_counter()
                inject_fault(stage, self.cfg.cell, int(self.cfg.seed))
                if not (stage == "train" and self._adopt_training(info)):
                    getattr(self, f"_{stage}")()
                info["seconds"][stage] = round(time.perf_counter() - t0, 2)
                log.info(
                    "[%s seed=%s] %s: done in %.1fs",
                    self.cfg.cell,
                    self.cfg.seed,
                    stage,
                    info["seconds"][stage],
                )
        except BaseException as e:
            cause = "interrupted" if isinstance(e, KeyboardInterrupt) else classify(e)
            atomic_write_text(rd.failed, f"cause: {cause}\nerror: {one_line(e)}\n\n{traceback.format_exc()}")
            atomic_write_json(rd.run_json, {**info, "status": "failed", "cause": cause})
            raise
        rd.failed.unlink(missing_ok=True)
        atomic_write_json(rd.run_json, {**info, "status": "done"})
        return "done"

    def _adopt_training(self, info: dict) -> bool:
        """The same training (same train key) finished by another sweep of this results folder is adopted,
        not redone. Generation is not adopted: its images' paths name the cell, and base images the sweep."""
        donor = find_donor(self.sweep_dir.parent, "train", self.keys["train"], self.rd.root)
        if donor is None:
            return False
        adopt(donor, self.rd.root, "train")
        self.rd.train_state.unlink(missing_ok=True)
        info.setdefault("reused", {})["train"] = str(donor.relative_to(self.sweep_dir.parent))
        log.info("[%s seed=%s] train: reused from %s", self.cfg.cell, self.cfg.seed, donor)
        return True

    def run_info(self, status: str) -> dict:
        cfg = self.cfg
        return {
            "cell": cfg.cell,
            "seed": int(cfg.seed),
            "sweep": cfg.sweep.name,
            "status": status,
            "factors": factors(cfg),
            "owner": {"host": socket.gethostname(), "pid": os.getpid()},
            "keys": self.keys,
            "provenance": {
                "versions": versions(),
                "model": cfg.model.name,
                "encoders": OmegaConf.to_container(cfg.encoders, resolve=True),
                "generation_seeds": f"image i of a prompt file uses seed {cfg.generate.base_seed} + i",
                "prompt_templates": self.templates,
                "concepts": [str(c.root) for c in self.concepts],
            },
            "seconds": {},
        }

    # --- stages -----------------------------------------------------------------------------------

    def _train(self) -> None:
        from .train import read_state, train

        rd = self.rd
        rd.legacy_train_state.unlink(missing_ok=True)  # a pickle of older versions: never unpickled
        state = read_state(rd.train_state, self.keys["train"])
        keep = {Path(p).name for p in state["saved"].values()} if state else set()
        for old in rd.checkpoints.glob("*") if rd.checkpoints.is_dir() else []:
            if old.name not in keep:  # checkpoints of another attempt, or past the saved state
                old.unlink()
        bar = _progress(f"{self.cfg.cell} seed={self.cfg.seed} train")
        saved = train(
            self.cfg,
            self.concepts,
            rd.checkpoint,
            rd.train_log,
            self.sweep_dir / "cache",
            self.model_key,
            bar,
            state_path=rd.train_state,
            state_key=self.keys["train"],
        )
        bar(None, None)
        files = [*saved.values(), rd.train_log]
        write_marker(rd.marker("train"), self.keys["train"], files, rd.root, {"checkpoints": sorted(saved)})
        rd.train_state.unlink(missing_ok=True)  # only an unfinished run needs it

    def _checkpoints(self) -> dict[int, Path]:
        from .store import read_json

        steps = read_json(self.rd.marker("train"))["checkpoints"]
        return {int(s): self.rd.checkpoint(s) for s in steps}

    def _generate(self) -> None:
        import pandas as pd

        from .generate import generate

        rd = self.rd
        shutil.rmtree(rd.images, ignore_errors=True)
        bar = _progress(f"{self.cfg.cell} seed={self.cfg.seed} generate")
        rows = generate(
            self.cfg, self.plan, self._checkpoints(), rd.root, self.sweep_dir, self.model_key, bar
        )
        bar(None, None)
        atomic_write_parquet(rd.images_parquet, pd.DataFrame(rows))
        own = [self.sweep_dir / r["path"] for r in rows if r["step"] > 0]
        write_marker(rd.marker("generate"), self.keys["generate"], [*own, rd.images_parquet], rd.root)

    def _evaluate(self) -> None:
        import pandas as pd

        from .evaluate import evaluate

        rd = self.rd
        images = pd.read_parquet(rd.images_parquet).reset_index(drop=True)
        missing = [p for p in images["path"] if not (self.sweep_dir / p).is_file()]
        if missing:  # a base image may have been removed from the shared cache
            raise FileNotFoundError(
                f"{len(missing)} image(s) listed in {rd.images_parquet} are missing, e.g. {missing[0]}"
            )
        rows = evaluate(self.cfg, images, self.leaves, self.sweep_dir)
        atomic_write_parquet(rd.metrics_parquet, pd.DataFrame(rows))
        write_marker(rd.marker("evaluate"), self.keys["evaluate"], [rd.metrics_parquet], rd.root)


def external_adapter_key(cfg: DictConfig) -> dict:
    """adapter=external: the file's bytes are part of the train key (a replaced file is re-checked)."""
    path = cfg.adapter.get("path") if cfg.adapter.algo == "external" else None
    if cfg.adapter.algo == "external" and not (path and Path(str(path)).expanduser().is_file()):
        raise FileNotFoundError(
            f"adapter.path={path!r}: adapter=external needs an existing .safetensors file "
            "(adapter.path=<file>; quote a path that holds '=': \"adapter.path='<file>'\")"
        )
    if path and Path(str(path)).suffix != ".safetensors":
        from .data import InputError

        raise InputError(
            [
                f"adapter.path={path!r}: adapters are read only from .safetensors files (a pickle can run "
                "code); convert it to .safetensors"
            ]
        )
    return {"external_adapter": file_sha256(Path(str(path)).expanduser())} if path else {}


def _progress(desc: str):
    """A tqdm bar fed with (done, total); call with (None, None) to close it."""
    from tqdm import tqdm

    state = {}

    def update(done, total):
        if done is None:
            if "bar" in state:
                state["bar"].close()
            return
        if "bar" not in state or state["bar"].total != total:
            if "bar" in state:
                state["bar"].close()
            state["bar"] = tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, mininterval=0.5)
        state["bar"].n = done
        state["bar"].refresh()

    return update
