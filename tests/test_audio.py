import warnings

import numpy as np
import pytest
import soundfile as sf

from sertrt.core.audio import (
    FRAME_STRIDE,
    RECEPTIVE_FIELD,
    SAMPLE_RATE,
    as_mono,
    exact_div,
    load_audio,
    run_batched,
    write_wav,
)
from sertrt.core.errors import SertrtError


def sine(freq: float, seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    x = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def dominant_freq(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[spectrum.argmax()])


def test_constants_divide_exactly():
    assert exact_div(SAMPLE_RATE, FRAME_STRIDE) == 50
    assert RECEPTIVE_FIELD == 400
    with pytest.raises(AssertionError):
        exact_div(16000, 300)


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
def test_resamples_to_16k_keeping_pitch_and_duration(tmp_path, rate):
    path = tmp_path / f"a{rate}.wav"
    write_wav(path, sine(440.0, 1.0, rate), rate)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - SAMPLE_RATE) <= 2
    assert abs(dominant_freq(audio, SAMPLE_RATE) - 440.0) < 3.0


def test_stereo_is_downmixed(tmp_path):
    left, right = sine(300.0, 0.5, 16000), np.zeros(8000, dtype=np.float32)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    audio = load_audio(path)
    np.testing.assert_allclose(audio, (left + right) / 2, atol=1e-6)


def test_missing_file(tmp_path):
    with pytest.raises(SertrtError, match="no such audio file"):
        load_audio(tmp_path / "nope.wav")


def test_corrupt_file_names_the_file(tmp_path):
    path = tmp_path / "bad.wav"
    path.write_bytes(b"this is not audio at all" * 20)
    with pytest.raises(SertrtError, match=r"bad\.wav: cannot read audio") as e:
        load_audio(path)
    assert "\n" not in str(e.value)


def test_truncated_wav_reads_what_is_there_and_warns(tmp_path):
    path = tmp_path / "cut.wav"
    write_wav(path, sine(200.0, 1.0, 16000), 16000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.warns(UserWarning, match="truncated WAV"):
        audio = load_audio(path)
    assert 7000 < len(audio) < 8100


def test_header_only_wav_is_an_error(tmp_path):
    path = tmp_path / "hdr.wav"
    write_wav(path, sine(200.0, 1.0, 16000), 16000)
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(SertrtError, match="hdr.wav"):
        load_audio(path)


def test_empty_audio(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(SertrtError, match="empty"):
        load_audio(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_samples(tmp_path, bad):
    x = sine(200.0, 0.2, 16000)
    x[100] = bad
    path = tmp_path / "nan.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    with pytest.raises(SertrtError, match=r"nan.wav: audio has 1 NaN/Inf samples, the first at 0.006 s \(sample 100\)"):
        load_audio(path)


def test_stream_reads_files_with_the_same_checks(tmp_path):
    """`sertrt stream` once read half of a truncated WAV without a word and gave `label: null`, exit 0, for
    a header-only one, while evaluate warned or refused: one reader now, one behaviour."""
    from sertrt.runtime.sources import file_chunks

    cut = tmp_path / "cut.wav"
    write_wav(cut, sine(200.0, 1.0, 16000), 16000)
    cut.write_bytes(cut.read_bytes()[: len(cut.read_bytes()) // 2])
    with pytest.warns(UserWarning, match="truncated WAV"):
        rate, chunks = file_chunks(cut)
    streamed = np.concatenate(list(chunks))[:, 0]
    with pytest.warns(UserWarning, match="truncated WAV"):
        np.testing.assert_array_equal(streamed, load_audio(cut))
    hdr = tmp_path / "hdr.wav"
    write_wav(hdr, sine(200.0, 1.0, 16000), 16000)
    hdr.write_bytes(hdr.read_bytes()[:44])  # a whole header, no samples
    for read in (load_audio, file_chunks):
        with pytest.raises(SertrtError, match="hdr.wav: audio is empty"):
            read(hdr)
    with pytest.raises(SertrtError, match="missing.wav: no such audio file"):
        file_chunks(tmp_path / "missing.wav")


def test_as_mono_reads_channels_either_way_and_refuses_an_ambiguous_shape():
    """torchaudio and librosa(mono=False) give (channels, num_samples): it was read as num_samples channels."""
    x = sine(200.0, 0.5, 16000)
    for layout in (np.stack([x, x], 1), np.stack([x, x]), x[None], x[:, None], np.stack([x] * 8)):
        np.testing.assert_allclose(as_mono(layout, "a"), x, atol=1e-7)
    for shape in [(4, 2), (2, 2), (16, 48000), (0, 0)]:  # both axes could be channels, or neither
        with pytest.raises(SertrtError, match=rf"^a: shape \({shape[0]}, {shape[1]}\) is ambiguous.*channels_first=True"):
            as_mono(np.zeros(shape, np.float32), "a")
    tiny = np.array([[0.1, 0.3], [0.5, 0.7], [0.2, 0.2]], np.float32)  # 3 samples of stereo, or 2 of 3 channels
    np.testing.assert_allclose(as_mono(tiny, "a", channels_first=False), [0.2, 0.6, 0.2], atol=1e-7)
    np.testing.assert_allclose(as_mono(tiny, "a", channels_first=True), [0.8 / 3, 1.2 / 3], atol=1e-7)
    with pytest.raises(SertrtError, match=r"a: audio must be \(num_samples,\) or 2-D with channels, got shape \(2, 3, 4\)"):
        as_mono(np.zeros((2, 3, 4)), "a")


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32"])
def test_every_integer_dtype_is_scaled_by_its_range(dtype):
    """int32 read as floats sat at about +87 dBFS (the silence gate never fired); uint8 kept its 128 offset."""
    x = sine(200.0, 0.5, 16000).astype(np.float64)
    info = np.iinfo(dtype)
    half = (int(info.max) - int(info.min) + 1) / 2
    pcm = np.round(x * (half - 1) + (half if info.min == 0 else 0)).astype(dtype)
    got = as_mono(np.stack([pcm, pcm]), "a")  # channels first, scaled before the downmix
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, x, atol=1.5 / half)
    assert as_mono(np.array([info.min, info.max], dtype), "a").tolist() == pytest.approx([-1.0, 1 - 1 / half])


@pytest.mark.parametrize("audio", [np.zeros(4, bool), np.zeros(4, complex), np.array(["a", "b"])])
def test_non_numeric_audio_is_refused(audio):
    with pytest.raises(SertrtError, match=f"a: audio must be float or integer samples, got dtype {audio.dtype}"):
        as_mono(audio, "a")


def test_non_finite_samples_are_found_before_any_arithmetic_and_timed_from_the_offset():
    """Random bytes read as float32 hold signalling NaNs: a mean over them leaked numpy's RuntimeWarning."""
    x = np.frombuffer(np.random.default_rng(0).bytes(8000), "<f4").reshape(-1, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(SertrtError, match=r"^a: audio has \d+ NaN/Inf samples"):
            as_mono(x, "a", channels_first=False)
    y = np.zeros((2, 1000), np.float32)
    y[1, 240] = np.inf
    with pytest.raises(SertrtError, match=r"a: audio has 1 NaN/Inf samples, the first at 2.515 s \(sample 40240\)"):
        as_mono(y, "a", rate=16000, offset=40000)


@pytest.mark.parametrize("batch_size", [1, 3, 4, 10])
def test_run_batched_returns_rows_in_input_order(batch_size):
    """Unsorted lengths, batch sizes that do not divide 7: row i is clip i's, each batch holds neighbours in length
    order padded to its longest (at least min_samples), and a clip is loaded only when its batch runs."""
    lengths = [50, 7, 300, 7, 120, 1, 90]
    clips = [np.full(n, i + 1, dtype=np.float32) for i, n in enumerate(lengths)]
    loaded, batches, progress = [], [], []

    def run(waveform, valid):  # -> (B, 2): the clip's marker and its valid samples, as the real runners return rows
        batches.append((len(loaded), waveform.shape, valid.tolist()))
        return np.stack([waveform[:, 0], valid], axis=1)

    out = run_batched(lengths, lambda i: loaded.append(i) or clips[i], run, batch_size, min_samples=64,
                      progress=lambda done, total: progress.append((done, total)))
    np.testing.assert_array_equal(out, [[i + 1, n] for i, n in enumerate(lengths)])
    by_length = sorted(lengths)  # stable: the two 7s keep their order
    assert [valid for _, _, valid in batches] == [by_length[s : s + batch_size] for s in range(0, 7, batch_size)]
    assert [shape for _, shape, _ in batches] == [(len(v), max(64, v[-1])) for _, _, v in batches]
    assert [n for n, _, _ in batches] == [min(s + batch_size, 7) for s in range(0, 7, batch_size)]
    assert progress == [(s, 7) for s in range(0, 7, batch_size)] + [(7, 7)]
