"""Issue 16: rd-train refuses bad settings before any work, resumes only what it can resume
exactly (Ctrl-C included), cleans stale temporaries and never loses a checkpoint to a full disk."""

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch
from helpers import make_checkpoint, one_line_error, unprivileged

from rd_edge.checkpoint import read_checkpoint
from rd_edge.cli.train import main as train_main
from rd_edge.core.errors import CheckpointError
from rd_edge.core.files import stale_temps
from rd_edge.train import TrainConfig, Trainer

TRAIN = [sys.executable, "-c", "import sys; from rd_edge.cli.train import main; sys.exit(main())"]


def cli_args(data, out, steps=4, *extra):
    return [
        "--data",
        str(data),
        "--out",
        str(out),
        "--backbone",
        "resnet18",
        "--image-size",
        "64",
        "--steps",
        str(steps),
        "--batch-size",
        "4",
        "--device",
        "cpu",
        "--teacher-weights",
        "none",
        "--quiet",
        *extra,
    ]


def config(data, out, steps=4, **kw):
    return TrainConfig(
        data=str(data),
        out=str(out),
        backbone="resnet18",
        image_size=64,
        steps=steps,
        batch_size=4,
        device="cpu",
        teacher_weights="none",
        **kw,
    )


@pytest.mark.parametrize(
    "change, message",
    [
        (["--batch-size", "0"], "batch_size must be a positive integer, got 0"),
        (["--image-size", "100"], "image size must be two multiples of 32"),
        (["--lr", "nan"], "lr must be a finite number > 0, got nan"),
        (["--lr", "-1"], "lr must be a finite number > 0"),
        (["--steps", "0"], "steps must be a positive integer, got 0"),
        (["--steps", "-3"], "steps must be a positive integer, got -3"),
        (["--epochs", "0"], "epochs must be a positive integer, got 0"),
        (["--out", "FOLDER"], "cannot write checkpoint .* it is a folder"),
    ],
)
def test_bad_settings_are_refused_before_any_work(demo_category, tmp_path, capsys, change, message):
    args = cli_args(demo_category, tmp_path / "m.pt")
    if "--epochs" in change:
        args = args[: args.index("--steps")] + args[args.index("--steps") + 2 :]
    change = [str(tmp_path) if c == "FOLDER" else c for c in change]
    for flag, value in zip(change[::2], change[1::2]):
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    assert train_main(args) == 1
    err = capsys.readouterr().err
    assert one_line_error(err) and re.search(message, err), err
    assert not (tmp_path / "m.pt").exists()


def test_unwritable_out_is_refused_before_any_work(demo_category, tmp_path):
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    proc = subprocess.run(
        unprivileged() + TRAIN + cli_args(demo_category, folder / "m.pt"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    folder.chmod(0o755)
    assert proc.returncode == 1 and one_line_error(proc.stderr), proc.stderr
    assert "cannot write checkpoint" in proc.stderr and "Permission denied" in proc.stderr


@pytest.fixture(scope="module")
def half_trained(demo_category, tmp_path_factory):
    """A resumable checkpoint after 2 of 4 steps."""
    out = tmp_path_factory.mktemp("resume") / "m.pt"
    with pytest.warns(UserWarning, match="random teacher"):
        trainer = Trainer(config(demo_category, out), progress=False)
    trainer.total_steps = 2
    trainer.fit()
    trainer.save(completed=False)
    return out


@pytest.mark.parametrize(
    "change, message",
    [
        ({"image_size": 96}, r"image size \[64, 64\] \(now \[96, 96\]\)"),
        ({"backbone": "resnet34"}, r"backbone 'resnet18' \(now 'resnet34'\)"),
        ({"data": "OTHER"}, r"data '.*' \(now '.*other'\)"),
        ({"seed": 3}, r"seed 0 \(now 3\)"),
    ],
)
def test_resume_with_other_settings_is_refused_up_front(
    half_trained, demo_category, tmp_path, change, message
):
    if change.get("data") == "OTHER":
        other = tmp_path / "other"
        shutil.copytree(demo_category, other)
        for extra in sorted((other / "train" / "good").iterdir())[:5]:
            extra.unlink()  # fewer images: the saved sampler would index past them
        change = {"data": str(other)}
    cfg = config(demo_category, half_trained)
    for key, value in change.items():
        setattr(cfg, key, value)
    with pytest.raises(CheckpointError, match=f"cannot resume .*{message}"):
        Trainer(cfg, resume=True, progress=False)


def test_stale_temporary_checkpoints_are_removed(demo_category, tmp_path, capsys):
    out = tmp_path / "m.pt"
    stale = tmp_path / ".m.pt.k9x2ab.tmp"
    stale.write_bytes(b"\0" * (1 << 20))  # what kill -9 during a save leaves
    Trainer(config(demo_category, out), progress=False)
    assert not stale.exists()
    assert f"removed {stale}" in capsys.readouterr().out


def test_pickle_refusal_keeps_the_reason(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo should never run",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "rd_edge.checkpoint", "x": Payload()}, path)
    with pytest.raises(
        CheckpointError,
        match=r"\(unsupported GLOBAL posix.system\); loading them could allow "
        r"arbitrary code execution, so rd-edge refuses",
    ):
        read_checkpoint(path)


@pytest.mark.parametrize("version", [True, -7, 0, "1", 2])
def test_checkpoint_format_version_must_be_a_known_integer(tmp_path, version):
    path = make_checkpoint(tmp_path / "m.pt")
    data = torch.load(path, weights_only=True)
    data["format_version"] = version
    torch.save(data, path)
    with pytest.raises(CheckpointError, match="checkpoint format version"):
        read_checkpoint(path)


def _have_tmpfs_namespace():
    return (
        shutil.which("unshare")
        and subprocess.run(
            ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"], capture_output=True
        ).returncode
        == 0
    )


@pytest.mark.skipif(not _have_tmpfs_namespace(), reason="needs unshare -rm and tmpfs (user namespaces)")
def test_a_disk_too_small_for_the_checkpoint_is_found_before_training(demo_category, tmp_path):
    """A real small disk (a 2 MiB tmpfs in a private mount namespace): refused before any step."""
    disk = tmp_path / "disk"
    disk.mkdir()
    script = f"mount -t tmpfs -o size=2m tmpfs {disk} && exec " + " ".join(TRAIN[:2]) + ' "$0" "$@"'
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script, TRAIN[2], *cli_args(demo_category, disk / "m.pt")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    assert one_line_error(proc.stderr) and re.search(
        r"needs about \d+ MiB, the disk has 2 MiB free", proc.stderr
    )


@pytest.mark.slow
@pytest.mark.skipif(not _have_tmpfs_namespace(), reason="needs unshare -rm and tmpfs (user namespaces)")
def test_a_disk_that_fills_up_mid_run_loses_no_steps(demo_category, tmp_path):
    """300 MiB disk: the first resumable checkpoint (~190 MiB) fits, the next ones do not (the old
    one stays until the new one is whole); training warns, goes on, and the final model fits."""
    disk = tmp_path / "disk"
    disk.mkdir()
    py = sys.executable
    copy = f"import shutil; shutil.copy('{disk}/m.pt', '{tmp_path}/m.pt')"  # out of the private mount
    script = f'mount -t tmpfs -o size=300m tmpfs {disk} && {py} -c "$0" "$@" && {py} -c "{copy}"'
    proc = subprocess.run(
        [
            "unshare",
            "-rm",
            "sh",
            "-c",
            script,
            TRAIN[2],
            *cli_args(demo_category, disk / "m.pt", 3, "--checkpoint-every", "0"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "warning: cannot write checkpoint" in proc.stderr and "training continues" in proc.stderr
    data = read_checkpoint(tmp_path / "m.pt")
    assert data["training"]["completed"] and data["training"]["step"] == 3


def _train_until_interrupted(args, step, sig):
    """Start rd-train and send ``sig`` half-way through the step after ``step`` (timed from the
    progress bar), where an interrupt used to catch the sampler advanced but the step uncounted.
    Its stderr is a terminal (a pseudo-terminal), as for a user pressing Ctrl-C: rd-train draws
    progress bars only there."""
    import fcntl
    import pty
    import struct
    import termios

    terminal, child_end = pty.openpty()
    # A terminal of 0 columns (a new pty's size) gets empty bars from tqdm: size it as a real one.
    fcntl.ioctl(child_end, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    proc = subprocess.Popen(
        TRAIN + [a for a in args if a != "--quiet"], stdout=subprocess.PIPE, stderr=child_end, text=True
    )
    os.close(child_end)
    seen, when = [], {}

    def read_terminal() -> str:
        try:
            return os.read(terminal, 256).decode(errors="replace")
        except OSError:  # EIO: rd-train exited and closed its end
            return ""

    def watch():
        for chunk in iter(read_terminal, ""):
            seen.append(chunk)
            for n in re.findall(r"\b(\d+)/\d+ \[", "".join(seen)[-400:]):
                when.setdefault(int(n), time.monotonic())
            if step in when and step - 1 in when and proc.poll() is None:
                time.sleep((when[step] - when[step - 1]) / 2)  # mid-way through step + 1
                proc.send_signal(sig)
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    rc = proc.wait(timeout=600)
    watcher.join(timeout=10)
    os.close(terminal)
    return rc, proc.stdout.read()


@pytest.mark.slow
def test_ctrl_c_then_resume_equals_an_uninterrupted_run_bit_for_bit(demo_category, tmp_path):
    steps = 8
    straight, split = tmp_path / "straight.pt", tmp_path / "split.pt"
    base = cli_args(demo_category, straight, steps, "--checkpoint-every", "1000")
    assert subprocess.run(TRAIN + base, capture_output=True, timeout=600).returncode == 0
    step = random.Random().randint(2, steps - 3)  # a random step, reported on failure
    rc, out = _train_until_interrupted(
        cli_args(demo_category, split, steps, "--checkpoint-every", "1000"), step, signal.SIGINT
    )
    assert rc == 1 or rc == 130, out
    interrupted_at = read_checkpoint(split)["training"]["step"]
    assert step <= interrupted_at < steps, f"SIGINT at progress {step} saved step {interrupted_at}"
    resumed = subprocess.run(
        TRAIN + cli_args(demo_category, split, steps, "--resume"), capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr
    a, b = read_checkpoint(straight), read_checkpoint(split)
    assert a["training"]["loss_history"] == b["training"]["loss_history"], f"SIGINT at step {interrupted_at}"
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), (
            f"{key} differs (SIGINT at {interrupted_at})"
        )


@pytest.mark.slow
def test_sigterm_saves_a_resumable_checkpoint_like_ctrl_c(demo_category, tmp_path):
    """`docker stop` / systemd stop a training with SIGTERM: it is held to the step's end and the
    checkpoint written, as for Ctrl-C (Python's default would die and lose the steps since the
    last periodic checkpoint); the exit code is 143, as for a process SIGTERM ended."""
    steps, out = 8, tmp_path / "m.pt"
    rc, _ = _train_until_interrupted(
        cli_args(demo_category, out, steps, "--checkpoint-every", "1000"), 3, signal.SIGTERM
    )
    assert rc == 143
    training = read_checkpoint(out)["training"]
    assert 3 <= training["step"] < steps and not training["completed"]
    assert stale_temps(out) == []
