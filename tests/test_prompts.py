"""Prompts and music on hold: espeak-ng makes valid 8 kHz prompts at an even level, phrases name prompts
that exist, and the default music on hold loops without a click at a telephone-friendly level."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soundfile

from softswitch.acd import Ack
from softswitch.media.player import LoopingPlayer
from softswitch.prompts import (
    MOH_NAME,
    PROMPTS,
    PromptError,
    PromptLibrary,
    announcement_phrase,
    exit_key_phrase,
    feature_prompt,
    generate,
    make_music_on_hold,
    number_phrase,
    position_phrase,
    synthesize_music_on_hold,
    timeout_prompt,
    wait_phrase,
)

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")

SAMPLE = ["number-7", "you-are-caller-number", "minutes"]


def dbfs(x: npt.NDArray[np.float64]) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(x**2))))


def as_float(samples: npt.NDArray[np.int16]) -> npt.NDArray[np.float64]:
    return samples.astype(np.float64) / 32768.0


# ---------------------------------------------------------------------------------------------------
# generation


@needs_espeak
def test_generate_writes_trimmed_level_matched_8khz_mono_16bit_prompts(tmp_path: Path) -> None:
    written = generate(tmp_path, if_missing=False, names=SAMPLE, music=False)

    assert sorted(written) == sorted(tmp_path / f"{name}.wav" for name in SAMPLE)
    voiced_levels = []
    durations = {}
    for path in written:
        info = soundfile.info(str(path))
        assert (info.samplerate, info.channels, info.subtype, info.format) == (8000, 1, "PCM_16", "WAV")
        data, _ = soundfile.read(str(path), dtype="float64")
        durations[path.stem] = len(data) / 8000
        assert 0.2 < durations[path.stem] < 3.0
        assert np.max(np.abs(data)) <= 10 ** (-1 / 20) + 1e-4  # peak at most -1 dBFS
        # Trimmed: espeak-ng's leading and trailing silence is gone (40 ms of it is kept, faded).
        loud = np.flatnonzero(np.abs(data) > 0.02 * np.max(np.abs(data)))
        assert loud[0] < 0.06 * 8000 and len(data) - loud[-1] < 0.06 * 8000
        blocks = data[: len(data) // 160 * 160].reshape(-1, 160)
        energy = np.sqrt(np.mean(blocks**2, axis=1))
        voiced = energy[energy > energy.max() * 0.01]
        voiced_levels.append(dbfs(voiced))
    # Every prompt is spoken at the same loudness, so a phrase glued from several sounds even.
    assert all(-21.5 < level < -18.5 for level in voiced_levels), voiced_levels
    assert durations["you-are-caller-number"] > durations["number-7"]
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, nothing left behind


@needs_espeak
def test_if_missing_makes_only_what_is_missing(tmp_path: Path) -> None:
    generate(tmp_path, if_missing=False, names=SAMPLE[:2], music=False)
    kept = tmp_path / "number-7.wav"
    before = kept.read_bytes()
    marker = tmp_path / "you-are-caller-number.wav"
    marker.write_bytes(b"an admin's own recording")

    written = generate(tmp_path, if_missing=True, names=SAMPLE, music=True)

    assert sorted(p.name for p in written) == ["minutes.wav", f"{MOH_NAME}.wav"]
    assert kept.read_bytes() == before
    assert marker.read_bytes() == b"an admin's own recording"
    assert generate(tmp_path, if_missing=True, names=SAMPLE, music=True) == []
    rewritten = generate(tmp_path, if_missing=False, names=["you-are-caller-number"], music=False)
    assert rewritten == [marker] and soundfile.info(str(marker)).samplerate == 8000


def test_unknown_prompt_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(PromptError, match="unknown prompts: no-such-prompt"):
        generate(tmp_path, if_missing=False, names=["no-such-prompt"])
    assert not any(tmp_path.iterdir())


def test_missing_espeak_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PromptError, match="espeak-ng is not installed"):
        generate(tmp_path / "sounds", if_missing=False, names=["minute"], music=False)


# ---------------------------------------------------------------------------------------------------
# the library


@needs_espeak
def test_library_loads_prompts_and_names_what_is_missing(tmp_path: Path) -> None:
    generate(tmp_path, if_missing=False, names=SAMPLE, music=True)

    with pytest.raises(PromptError) as info:
        PromptLibrary.load(tmp_path)
    message = str(info.value)
    assert "number-8" in message and "softswitch prompts" in message
    assert "number-7," not in message and "minutes," not in message

    library = PromptLibrary.load(tmp_path, required=False)
    assert set(library.names()) == {*SAMPLE, MOH_NAME}
    samples = library.sound("number-7")
    assert samples.dtype == np.int16 and samples.ndim == 1 and not samples.flags.writeable
    assert len(samples) == soundfile.info(str(tmp_path / "number-7.wav")).frames
    assert [s.name for s in library.phrase(["you-are-caller-number", "number-7"])] == [
        "you-are-caller-number",
        "number-7",
    ]
    assert library.music_on_hold.duration == pytest.approx(30.0)
    with pytest.raises(KeyError, match="number-8"):
        library.sound("number-8")


def test_library_reports_an_unreadable_file(tmp_path: Path) -> None:
    for name in [*PROMPTS, MOH_NAME]:
        soundfile.write(str(tmp_path / f"{name}.wav"), np.zeros(800, np.int16), 8000, subtype="PCM_16")
    (tmp_path / "minute.wav").write_bytes(b"not a wav file")
    with pytest.raises(PromptError, match=r"minute\.wav"):
        PromptLibrary.load(tmp_path)
    library = PromptLibrary.load(tmp_path, required=False)
    assert "minute" not in library and "minutes" in library and len(library) == len(PROMPTS)


# ---------------------------------------------------------------------------------------------------
# phrases


def test_numbers_compose_from_ones_teens_and_tens() -> None:
    assert number_phrase(0) == ["number-0"]
    assert number_phrase(13) == ["number-13"]
    assert number_phrase(20) == ["number-20"]
    assert number_phrase(47) == ["number-40", "number-7"]
    assert number_phrase(99) == ["number-90", "number-9"]
    for bad in (-1, 100):
        with pytest.raises(ValueError):
            number_phrase(bad)
    spoken = {n: " ".join(PROMPTS[name] for name in number_phrase(n)) for n in range(100)}
    assert spoken[21] == "twenty one" and spoken[85] == "eighty five" and spoken[14] == "fourteen"
    assert len(set(spoken.values())) == 100


def test_position_phrases() -> None:
    assert position_phrase(1) == ["you-are-next"]
    assert position_phrase(2) == ["you-are-caller-number", "number-2", "in-the-queue"]
    assert position_phrase(35) == ["you-are-caller-number", "number-30", "number-5", "in-the-queue"]
    assert position_phrase(99)[1:3] == ["number-90", "number-9"]
    assert position_phrase(100) == ["many-callers-ahead"]
    with pytest.raises(ValueError):
        position_phrase(0)


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (None, []),
        (float("nan"), []),
        (0.0, ["estimated-wait-is", "less-than-one-minute"]),
        (59.9, ["estimated-wait-is", "less-than-one-minute"]),
        (60.0, ["estimated-wait-is", "number-1", "minute"]),
        (89.0, ["estimated-wait-is", "number-1", "minute"]),
        (90.0, ["estimated-wait-is", "number-2", "minutes"]),
        (23 * 60 + 10, ["estimated-wait-is", "number-20", "number-3", "minutes"]),
        (59 * 60 + 29, ["estimated-wait-is", "number-50", "number-9", "minutes"]),
        (59 * 60 + 30, ["estimated-wait-is", "more-than-an-hour"]),
    ],
)
def test_wait_phrases_round_to_whole_minutes(seconds: float | None, expected: list[str]) -> None:
    assert wait_phrase(seconds) == expected


def test_every_phrase_names_a_prompt_in_the_catalogue() -> None:
    names: set[str] = set()
    for position in range(1, 120):
        names.update(position_phrase(position))
    for seconds in range(0, 7200, 7):
        names.update(wait_phrase(float(seconds)))
    for key in "0123456789*#":
        names.update(exit_key_phrase(key))
    for action in ("login", "logout", "pause", "resume", "end-wrap-up", "end_wrap_up", "bogus"):
        names.update(feature_prompt(action, ack) for ack in Ack)
    for reason in ("max_wait", "join_empty", "leave_empty", "full", "unknown_queue", "agent_lost"):
        names.add(timeout_prompt(reason, None))
        names.add(timeout_prompt(reason, "1900"))
    assert names <= set(PROMPTS)
    assert announcement_phrase(3, 140.0) == [
        "you-are-caller-number", "number-3", "in-the-queue", "estimated-wait-is", "number-2", "minutes",
    ]  # fmt: skip
    assert announcement_phrase(2, None) == position_phrase(2)


def test_feature_code_confirmations() -> None:
    assert feature_prompt("login", Ack.DONE) == "logged-in"
    assert feature_prompt("logout", Ack.PENDING) == "logout-pending"
    assert feature_prompt("pause", Ack.DONE) == "paused"
    assert feature_prompt("pause", Ack.NOT_LOGGED_IN) == "not-logged-in"
    assert feature_prompt("resume", Ack.DONE) == "welcome-back"
    assert feature_prompt("end-wrap-up", Ack.DONE) == "wrap-up-ended"
    assert feature_prompt("login", Ack.UNKNOWN_AGENT) == "invalid-code"
    assert feature_prompt("*19", "done") == "invalid-code"
    assert exit_key_phrase("0") == ["press-to-leave", "number-0"]
    assert exit_key_phrase("#") == ["press-to-leave", "hash"]
    assert exit_key_phrase("A") == []
    assert timeout_prompt("max_wait", None) == "max-wait-goodbye"
    assert timeout_prompt("join_empty", None) == "no-agents-goodbye"
    assert timeout_prompt("full", "sales") == "transferring"


def test_the_catalogue_says_what_the_issue_asks_for() -> None:
    texts = set(PROMPTS.values())
    for text in (
        "you are caller number",
        "in the queue",
        "your estimated waiting time is",
        "minutes",
        "minute",
        "less than one minute",
        "please hold, your call is important to us",
        "thank you for holding",
        "there are no agents available, goodbye",
        "you are logged in",
        "you are logged out",
        "you are paused",
        "welcome back",
        "wrap-up ended",
        "sorry, that code is not valid",
    ):
        assert text in texts
    assert all(name == name.lower() and " " not in name and "/" not in name for name in PROMPTS)


# ---------------------------------------------------------------------------------------------------
# music on hold


@pytest.fixture(scope="module")
def moh() -> npt.NDArray[np.float64]:
    return as_float(synthesize_music_on_hold(30.0))


def test_moh_level_and_band(moh: npt.NDArray[np.float64]) -> None:
    assert len(moh) == 30 * 8000
    assert -19.0 < dbfs(moh) < -17.0
    assert 20 * np.log10(np.max(np.abs(moh))) < -1.0
    # No gaps: every second has music in it.
    seconds = moh.reshape(30, 8000)
    assert min(dbfs(second) for second in seconds) > -30.0
    # Nearly all of it inside the telephone band (a phone cuts below 300 Hz and above 3400 Hz).
    power = np.abs(np.fft.rfft(moh)) ** 2
    freqs = np.fft.rfftfreq(len(moh), 1 / 8000)
    assert power[(freqs >= 300) & (freqs <= 3400)].sum() / power.sum() > 0.9


def test_moh_loops_without_a_click(moh: npt.NDArray[np.float64]) -> None:
    """Music is predictable from its recent past; a click is not. Fit one linear predictor (32 taps) to the
    whole loop played round and round, and check that across the loop point the prediction error is no
    bigger than in the music's own 10 ms windows (a loop cut off mid-note misses by 40x)."""
    order, margin = 32, 400
    circle = np.concatenate([moh[-(order + margin) :], moh, moh[:margin]])
    past = np.lib.stride_tricks.sliding_window_view(circle[:-1], order)
    actual = circle[order:]
    taps, *_ = np.linalg.lstsq(past, actual, rcond=None)
    error = np.abs(actual - past @ taps)
    seam = margin  # error[margin] predicts moh[0] from the end of the loop
    windows = error[: len(error) // 80 * 80].reshape(-1, 80).max(axis=1)
    assert error[seam - 40 : seam + 40].max() <= np.percentile(windows, 99)


def test_moh_file_plays_through_a_looping_player(tmp_path: Path) -> None:
    path = make_music_on_hold(tmp_path / "moh.wav", seconds=10)
    info = soundfile.info(str(path))
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (8000, 1, "PCM_16", 80000)
    data, _ = soundfile.read(str(path), dtype="int16")
    np.testing.assert_array_equal(data, synthesize_music_on_hold(10))
    player = LoopingPlayer(data)
    frames = np.concatenate([player.get_frame() for _ in range(1000)])  # two loops
    np.testing.assert_array_equal(frames, np.tile(data, 2))
