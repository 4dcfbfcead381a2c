"""`language` stage: lid.176 on real sentences, filtering, offline operation."""

from __future__ import annotations

import socket

import pyarrow as pa
import pytest
from curate.filters.language import Language
from curate.pipelines.errors import ConfigError

SENTENCES = {
    "en": "The committee will publish its report on the state of the river after the summer holidays.",
    "de": "Der Ausschuss wird seinen Bericht über den Zustand des Flusses nach den Sommerferien veröffentlichen.",
    "fr": "Le comité publiera son rapport sur l'état de la rivière après les vacances d'été.",
    "es": "El comité publicará su informe sobre el estado del río después de las vacaciones de verano.",
    "it": "Il comitato pubblicherà la sua relazione sullo stato del fiume dopo le vacanze estive.",
    "nl": "De commissie publiceert haar rapport over de toestand van de rivier na de zomervakantie.",
    "pt": "O comitê publicará seu relatório sobre o estado do rio depois das férias de verão.",
    "ru": "Комитет опубликует свой доклад о состоянии реки после летних каникул.",
    "ja": "委員会は夏休みの後に川の状態に関する報告書を発表します。",
    "zh": "委员会将在暑假后发表关于河流状况的报告。",
    "ar": "ستنشر اللجنة تقريرها عن حالة النهر بعد العطلة الصيفية.",
    "pl": "Komisja opublikuje swój raport o stanie rzeki po wakacjach letnich.",
}


@pytest.fixture
def no_network(monkeypatch):
    """Any connection to a non-loopback address fails (and is recorded)."""
    attempts: list[object] = []
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and (host.startswith("127.") or host in ("localhost", "::1")) or self.family == socket.AF_UNIX:
            return real_connect(self, address)
        attempts.append(address)
        raise OSError(f"network access blocked in test: {address!r}")

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return attempts


def table(texts):
    return pa.table({"id": [str(i) for i in range(len(texts))], "text": texts})


def test_identifies_languages(no_network):
    stage = Language(Language.Params(keep_all=True))
    stage.setup()
    out = stage.process(table(list(SENTENCES.values()))).table
    assert out.column("language").to_pylist() == list(SENTENCES.keys())
    scores = out.column("language_score").to_pylist()
    assert all(0.5 < s <= 1.0 for s in scores), scores
    assert no_network == []


def test_keeps_only_wanted_languages(no_network):
    stage = Language(Language.Params(languages=["en", "de"], min_score=0.5))
    stage.setup()
    texts = [SENTENCES["en"], SENTENCES["fr"], SENTENCES["de"], SENTENCES["it"]]
    out = stage.process(table(texts))
    assert out.drops.mask.tolist() == [False, True, False, True]
    assert out.drops.rule[1] == "language_not_kept"
    assert "fr" in out.drops.reason[1]
    assert out.counters["lang_en"] == 1
    assert no_network == []


def test_min_score_without_languages():
    stage = Language(Language.Params(min_score=0.99))
    stage.setup()
    out = stage.process(table([SENTENCES["de"], "hmm"]))
    assert out.drops.mask.tolist()[1] is True
    assert out.drops.rule[1] == "low_language_score"


def test_newlines_do_not_break_prediction():
    stage = Language(Language.Params(keep_all=True))
    stage.setup()
    out = stage.process(table([SENTENCES["fr"].replace(" ", "\n")]))
    assert out.table.column("language")[0].as_py() == "fr"


def test_matches_datatrove_language_filter():
    """The keep decision is datatrove's LanguageFilter's (same model file)."""
    from curate.filters import _fasttext
    from datatrove.data import Document
    from datatrove.pipeline.filters.language_filter import LanguageFilter
    from datatrove.utils.lid import FT176LID

    class Local(FT176LID):
        @property
        def model(self):
            return _fasttext.load_model(_fasttext.lid176_path())

    texts = list(SENTENCES.values()) + ["12 34 56", "Mixed text avec des mots français and English words", "ok"]
    for languages, thr in ((["en"], 0.65), (None, 0.65), (["en", "fr"], 0.3)):
        ref = LanguageFilter(languages=languages, language_threshold=thr)
        ref.model = Local(languages)
        expected = [bool(ref.filter(Document(text=t, id=str(i)))) for i, t in enumerate(texts)]
        stage = Language(Language.Params(languages=languages, min_score=thr))
        stage.setup()
        got = (~stage.process(table(texts)).drops.mask).tolist()
        assert got == expected, (languages, thr)


def test_metadata_records_model_and_hash():
    stage = Language(Language.Params())
    stage.check(None)
    meta = stage.metadata()
    assert meta["model"].endswith("lid.176.ftz")
    assert len(meta["model_sha256"]) == 64


def test_missing_model_file_is_a_config_error(tmp_path):
    stage = Language(Language.Params(model="nope/lid.bin"))
    with pytest.raises(ConfigError, match="nope/lid.bin"):
        stage.check(tmp_path)


def test_threshold_boundary_is_exact():
    """A score just above min_score keeps the document (fastText's own pruning rounds)."""
    probe = Language(Language.Params(keep_all=True))
    probe.setup()
    texts = list(SENTENCES.values())
    scores = probe.process(table(texts)).table.column("language_score").to_pylist()
    for text, s in zip(texts, scores):
        just_below = Language(Language.Params(min_score=s - 1e-6))
        just_below.setup()
        assert just_below.process(table([text])).drops.mask.tolist() == [False]
        at = Language(Language.Params(min_score=min(1.0, s)))
        at.setup()
        assert at.process(table([text])).drops.mask.tolist() == [True]  # datatrove keeps only score > min_score
