"""What every training loop shares: distribution strategy, seeding, checkpoints, run records.

State lives at the edges: a run folder holds `run.json` (config, fingerprints), `ckpt/` (a
`tf.train.CheckpointManager`: model, optimiser and step, saved atomically by TF) and `tb/`
(TensorBoard). A run restarted on the same folder resumes from its last checkpoint; because the
input pipeline is indexed by step (see `tf_svdx.data.pipeline`) and every random state is in the
checkpoint, a resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras
import tensorflow as tf

from tf_svdx.errors import ConfigError
from tf_svdx.io import write_json

STRATEGIES = ("default", "mirrored", "multiworker")


def seed_everything(seed: int) -> None:
    """Python, numpy, TF and Keras seeds, and deterministic TF kernels."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def make_strategy(name: str, logical_cpus: int = 0) -> tf.distribute.Strategy:
    """`default` (one device), `mirrored` (all local GPUs, else all logical CPUs) or
    `multiworker` (MultiWorkerMirroredStrategy from TF_CONFIG). `logical_cpus` splits the CPU
    into that many logical devices first (must run before TF initialises its devices)."""
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy {name!r} (valid: {', '.join(STRATEGIES)})")
    if logical_cpus:
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * logical_cpus)
        except RuntimeError as e:  # devices already initialised in this process
            if len(tf.config.list_logical_devices("CPU")) != logical_cpus:
                raise ConfigError(f"cannot split the CPU into {logical_cpus} devices: {e}") from e
    if name == "default":
        return tf.distribute.get_strategy()
    # On two logical CPUs, ~10 % of replicated WGAN-GP runs (12 of 120, plain SGD, three runs at
    # once on two cores) logged a Wasserstein estimate up to 4 % off from the first step on while
    # the gradient penalty was unchanged; with grappler's dependency optimizer off, 0 of 120 in
    # the same harness (0 of 90 with all of grappler off), though one run inside a full test
    # suite still went wrong, so this reduces a TF scheduling fault whose cause is not fully
    # known. Single-device runs were bit-identical (30 of 30). Off before the step is first
    # called.
    tf.config.optimizer.set_experimental_options({"dependency_optimization": False})
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ConfigError("strategy 'multiworker' needs the TF_CONFIG environment variable")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if tf.config.list_logical_devices("GPU"):
        return tf.distribute.MirroredStrategy()
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(cpus, cross_device_ops=tf.distribute.ReductionToOneDevice())


def distributed_iterator(strategy: tf.distribute.Strategy, dataset: tf.data.Dataset):
    """An iterator over global batches, each split over the strategy's replicas. Every worker
    generates the same global batch and keeps its own replicas' share of it (DATA sharding), so
    replica r gets the r-th contiguous slice of every global batch on any number of workers."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return iter(strategy.experimental_distribute_dataset(dataset.with_options(options)))


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True unless this process is a non-chief worker of a multi-worker cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    return (resolver.task_type == "worker" and resolver.task_id == 0
            and "chief" not in resolver.cluster_spec().as_dict())


class Run:
    """A run folder: its record, checkpoints and TensorBoard writer.

    Under MultiWorkerMirroredStrategy every worker must take part in saving (it may involve
    collective ops), but only the chief writes to the run folder (which must be on storage all
    workers share, for them to resume from it): the others save to a scratch folder of their
    own, get a no-op TensorBoard writer and never write records."""

    def __init__(self, out: str | Path, record: dict, *, keep: int = 3,
                 strategy: tf.distribute.Strategy | None = None, **trackables):
        self.out = Path(out)
        self.chief = is_chief(strategy or tf.distribute.get_strategy())
        self.out.mkdir(parents=True, exist_ok=True)
        if self.chief:
            self._check_record(record)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        # Keras 3 does not put a model's SeedGenerator states (dropout RNG) into a
        # tf.train.Checkpoint of the model; without them a resumed run draws other masks.
        for name, obj in list(trackables.items()):
            if isinstance(obj, keras.Model):
                trackables[f"{name}_state"] = list(obj.non_trainable_variables)
        self.checkpoint = tf.train.Checkpoint(step=self.step, **trackables)
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(self.out / "ckpt"),
                                                  max_to_keep=keep)
        if self.chief:
            self._save_manager = self.manager
            self.writer = tf.summary.create_file_writer(str(self.out / "tb"))
        else:
            scratch = self.out / f".worker-{strategy.cluster_resolver.task_id}" / "ckpt"
            self._save_manager = tf.train.CheckpointManager(self.checkpoint, str(scratch),
                                                            max_to_keep=1)
            self.writer = tf.summary.create_noop_writer()

    def _check_record(self, record: dict):
        """A folder belongs to one config (except its length): refuse to mix runs."""
        path = self.out / "run.json"
        if path.exists():
            old = json.loads(path.read_text(encoding="utf-8"))
            if old.get("resume_key") != record.get("resume_key"):
                raise ConfigError(f"{path}: this folder holds a run of another config or data "
                                  f"(resume key {old.get('resume_key')} ≠ "
                                  f"{record.get('resume_key')}); use a new output folder")
        write_json(path, record)

    def restore(self) -> int:
        """Restore the latest checkpoint if any; returns the step to continue from."""
        if self.manager.latest_checkpoint:
            self.checkpoint.restore(self.manager.latest_checkpoint).assert_existing_objects_matched()
        return int(self.step.numpy())

    def save(self, step: int) -> None:
        self.step.assign(step)
        self._save_manager.save(checkpoint_number=step)


def save_weights_atomically(model: keras.Model, path: str | Path) -> None:
    """`model.save_weights` under a temporary name (Keras insists on the suffix), then rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name[:-len('.weights.h5')]}.tmp.weights.h5")
    model.save_weights(tmp)
    os.replace(tmp, path)
