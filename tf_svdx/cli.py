"""The `svdx` command: `svdx <subcommand> [--config=configs/x.toml] [--config.a.b=value] ...`.

One short function per subcommand; the work lives in the package. Configuration is the typed
defaults of `tf_svdx.config`, then the TOML file, then `--config.key=value` overrides, then the
subcommand's shortcut flags (e.g. `--corpus`, `--out`).
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402

from tf_svdx import config as config_lib  # noqa: E402
from tf_svdx.errors import SvdxError  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("config", None, "TOML config file (see configs/); defaults otherwise.")
flags.DEFINE_string("corpus", None, "prepare: corpus folder (Jamendo layout or music folder) "
                    "or CSV manifest; shortcut for --config.prepare.corpus.")
flags.DEFINE_string("out", None, "prepare: output folder; shortcut for --config.prepare.out.")
flags.DEFINE_bool("strict", None, "prepare: fail on the first bad file instead of skipping it.")
flags.DEFINE_bool("progress", True, "Show progress bars.")

_OVERRIDE_PREFIX = "--config."


def _config(extra: dict[str, object] | None = None) -> config_lib.Config:
    overrides = list(_OVERRIDES)
    for key, value in (extra or {}).items():
        if value is not None:
            overrides.append(f"{key}={value}")
    return config_lib.load(FLAGS.config, overrides)


def cmd_prepare(argv):
    """Turn a corpus into TFRecord shards, standardisation statistics and a manifest."""
    from tf_svdx.data.prepare import prepare, summary_lines
    cfg = _config({"prepare.corpus": FLAGS.corpus, "prepare.out": FLAGS.out,
                   "prepare.strict": FLAGS.strict})
    manifest = prepare(cfg, progress=FLAGS.progress)
    print(f"prepared {cfg.prepare.corpus} → {cfg.prepare.out}")
    for line in summary_lines(manifest):
        print(line)


def cmd_config(argv):
    """Print the effective configuration (defaults + file + overrides) as TOML-like lines."""
    import json
    print(json.dumps(_config().to_dict(), indent=2))


COMMANDS = {
    "prepare": cmd_prepare,
    "config": cmd_config,
}
_OVERRIDES: list[str] = []


def _usage() -> str:
    lines = ["usage: svdx <command> [flags]   (svdx --helpfull for every flag)", "commands:"]
    for name, fn in COMMANDS.items():
        lines.append(f"  {name:<14} {fn.__doc__.splitlines()[0]}")
    return "\n".join(lines)


def main(argv):
    if len(argv) < 2 or argv[1] not in COMMANDS:
        given = f"unknown command {argv[1]!r}\n" if len(argv) >= 2 else ""
        print(given + _usage(), file=sys.stderr)
        return 2
    if len(argv) > 2:
        print(f"svdx: error: unexpected arguments {argv[2:]}", file=sys.stderr)
        return 2
    try:
        COMMANDS[argv[1]](argv[2:])
    except SvdxError as e:
        print(f"svdx: error: {e}", file=sys.stderr)
        return 2
    return 0


def run():
    """Console-script entry point: split off `--config.key=value` overrides, then absl."""
    argv = []
    for arg in sys.argv:
        if arg.startswith(_OVERRIDE_PREFIX):
            _OVERRIDES.append(arg[len(_OVERRIDE_PREFIX):])
        else:
            argv.append(arg)
    app.run(lambda a: sys.exit(main(a)), argv=argv)


if __name__ == "__main__":
    run()
