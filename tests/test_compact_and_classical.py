"""Compact models trained from scratch and the classical floor, on a real BANKING77 slice
(6 intents), served through the SLM interface."""

import pytest

from slmshift.demo.datasets import banking77_labels, load_banking77
from slmshift.records import Message
from slmshift.slm import SLMGenerator, load_slm
from slmshift.slm.ensemble import save_ensemble
from slmshift.training.classical import train_classical
from slmshift.training.compact import CompactConfig, CompactTrainingError, train_compact

INTENTS = set(banking77_labels()[:6])
COMPACT_FLOOR = 0.75  # agreement on the slice's test rows after 6 epochs
CLASSICAL_FLOOR = 0.80


def pairs(split):
    return [(e.text, e.label) for e in load_banking77(split) if e.label in INTENTS]


@pytest.fixture(scope="module")
def data():
    train = pairs("train")
    return train[100:], train[:100], pairs("test")


@pytest.fixture(scope="module")
def compact_dir(data, tmp_path_factory):
    train, validation, _ = data
    directory = tmp_path_factory.mktemp("models") / "compact"
    config = CompactConfig(epochs=6, batch_size=32, learning_rate=5e-3, seed=1, threads=1)
    train_compact(train, validation, directory, task="router/label", config=config)
    return directory


@pytest.fixture(scope="module")
def classical_dir(data, tmp_path_factory):
    directory = tmp_path_factory.mktemp("models") / "classical"
    train_classical(data[0], directory, task="router/label")
    return directory


def agreement(slm, rows):
    probabilities = slm.label_probabilities([text for text, _ in rows])
    return sum(slm.labels[i] == label for i, (_, label) in zip(probabilities.argmax(1), rows)) / len(rows)


def test_compact_model_reaches_its_floor_on_held_out_requests(compact_dir, data):
    slm = load_slm(compact_dir)
    assert isinstance(slm, SLMGenerator)
    assert slm.manifest.kind == "compact" and "from scratch" in slm.manifest.base_model
    assert agreement(slm, data[2]) >= COMPACT_FLOOR


def test_compact_generate_answers_a_known_label_with_its_probability(compact_dir, data):
    slm = load_slm(compact_dir)
    text, _ = data[2][0]
    generation = slm.generate([Message("system", "Classify."), Message("user", text)])
    assert generation.message.content in INTENTS
    probabilities = slm.label_probabilities([text])[0]
    assert generation.confidence == pytest.approx(float(probabilities.max()), rel=1e-4)


def test_compact_training_resumes_from_its_checkpoint(data, tmp_path):
    train, validation, _ = data
    config = CompactConfig(epochs=2, batch_size=64, seed=3, threads=1)
    seen = []
    with pytest.raises(KeyboardInterrupt):
        def stop(entry):
            seen.append(entry["epoch"])
            raise KeyboardInterrupt

        train_compact(train, validation, tmp_path, config=config, progress=stop)
    assert (tmp_path / "checkpoint.pt").is_file()
    result = train_compact(train, validation, tmp_path, config=config, resume=True, progress=seen.append)
    assert [entry if isinstance(entry, int) else entry["epoch"] for entry in seen] == [1, 2]
    assert result.best_epoch in (1, 2) and not (tmp_path / "checkpoint.pt").exists()


def test_compact_needs_two_answers(tmp_path):
    with pytest.raises(CompactTrainingError, match="at least two distinct answers"):
        train_compact([("hi", "greet")], [], tmp_path)


def test_classical_floor_is_served_as_an_slm(classical_dir, data):
    slm = load_slm(classical_dir)
    assert slm.manifest.kind == "classical"
    assert agreement(slm, data[2]) >= CLASSICAL_FLOOR
    generation = slm.generate([Message("user", data[2][0][0])])
    assert generation.message.content in INTENTS and 0 < generation.confidence <= 1


def test_ensemble_averages_members_and_stays_in_the_label_set(compact_dir, classical_dir, data, tmp_path):
    import shutil

    shutil.copytree(compact_dir, tmp_path / "compact")
    shutil.copytree(classical_dir, tmp_path / "classical")
    labels = load_slm(classical_dir).labels
    save_ensemble(tmp_path, ["compact", "classical"], labels=labels, task="router/label")
    ensemble = load_slm(tmp_path)
    texts = [text for text, _ in data[2][:20]]
    expected = (load_slm(tmp_path / "compact").label_probabilities(texts)[:, [
        load_slm(tmp_path / "compact").labels.index(label) for label in labels
    ]] + load_slm(tmp_path / "classical").label_probabilities(texts)) / 2
    assert abs(ensemble.label_probabilities(texts) - expected).max() < 1e-6
    assert ensemble.generate([Message("user", texts[0])]).message.content in INTENTS
