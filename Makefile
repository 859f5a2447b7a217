# Developer shortcuts. The README's two quick-start commands need none of this.
PY ?= .venv/bin/python
BUILD ?= build/demo
# ImageNet weights for the demo model: torchvision downloads them once; offline, point TORCH_HOME at a copy.
export TORCH_HOME ?= $(if $(wildcard ../shared/weights/torch-hub),$(abspath ../shared/weights/torch-hub),$(HOME)/.cache/torch)
export NO_ALBUMENTATIONS_UPDATE = 1

# The demo model's recipe (see samples/MODEL_CARD.md; its data steps are samples/demo_data.toml): the real masked and bare photos of ../shared (a share of
# their near-duplicate groups held out for `make demo-eval`), the real street and crowd scenes with boxed faces
# (real incorrect masks among them; a quarter of their groups held out for `make demo-scenes`), incorrect (and
# worn) masks over 300 of the real bare faces and incorrect masks alone over 600 more of them, half cut from
# real masked photos not held out (`cut-masks`), half drawn; and the 200 synthetic people made from the 5
# bundled photos. MTCNN in the photos is pinned at the settings the demo model's data was made with; the
# scenes are cut where the monitor's own detector ([detector]) finds each face. REAL and SCENES below are
# where the evaluations read them; the recipe names its own [sources].
DEMO_OUT ?= samples/demo_model.onnx
DETECTOR_OUT ?= samples/detector_masked.pt
REAL ?= ../shared/datasets/face-mask-real
SCENES ?= ../shared/datasets/face-mask-scenes
BACKGROUNDS ?= ../shared/assets/video/vtest.avi
SYNTH_ARGS = --faces samples/faces --variants 40 --seed 0
FIT_ARGS = --epochs 8 --input-height 160 --input-width 120 --batch-size 32 --num-workers 0 --seed 42 \
	--head multi --best-metric f1_mask --known-tasks mask --val-fraction 0.15 \
	--source-weights prepared=0.6 synthreal=1.5 synthinc=3 scenes=4 real=2 --surroundings 0.5
NICE ?= nice -n 10
# the earlier demo's recipe (synthetic data only), kept for demo-holdout
HOLDOUT_FIT_ARGS = --epochs 6 --input-height 128 --input-width 96 --batch-size 32 --num-workers 0 --weighted-sampler --seed 42

.PHONY: install lock test demo-model demo-detector demo-data demo-eval demo-scenes demo-holdout demo-door sample-video bench clean-demo

install:
	python3 -m venv .venv && .venv/bin/pip install --require-hashes -r requirements.lock \
		&& .venv/bin/pip install --no-deps --no-build-isolation -e .

## requirements.lock from pyproject.toml (runtime + [dev], hashes); UPGRADE=--upgrade takes new releases too
UPGRADE ?=
lock:
	$(dir $(PY))uv pip compile pyproject.toml --extra dev --generate-hashes --universal --python-version 3.11 -o requirements.lock $(UPGRADE)

test:
	$(PY) -m pytest

## The demo model's data, all in $(BUILD)/cache (crops only; the photos stay in ../shared): the steps of
## samples/demo_data.toml (`mask-train recipe`; a step whose command and inputs have not changed is skipped).
demo-data:
	$(NICE) $(PY) -m train recipe samples/demo_data.toml --out $(BUILD)

## Rebuild samples/demo_model.onnx (and the masked-face MTCNN) from scratch: data -> fit -> export -> the
## held-out numbers.
demo-model: demo-data
	$(NICE) $(PY) -m train fit --cache $(BUILD)/cache --out $(BUILD)/run $(FIT_ARGS) --threads 2
	$(PY) -m train export-onnx --checkpoint $(BUILD)/run/best.pt --out $(DEMO_OUT)
	$(MAKE) demo-detector
	$(MAKE) demo-eval

## samples/detector_masked.pt: MTCNN's three nets taught the imported real photos (not the held-out ones), over
## frames of the pedestrian clip, in three rounds: the second places the close-ups and thumbnails whose face the
## import found no box for with the first round's nets (--finder), and learns from those too (P-Net 6 epochs);
## the third goes on from the second's nets (--init) with the kept street and crowd scenes as whole frames, the
## scenes with a face the second round misses cut into 3 times as many frames (--hard-repeat); the fourth goes on
## from the third's, the scenes it still misses a face of made hard. One thread for the scene rounds: the shipped
## file is what they make.
## $(BUILD)/detector_val.csv: its validation photos, where [detector] thresholds were chosen (evaluate-frames);
## $(BUILD)/detector_val_scenes.csv: its validation scenes, where they were checked (evaluate-scenes).
demo-detector:
	$(NICE) $(PY) -m train fit-detector --cache $(BUILD)/cache --import real --backgrounds $(BACKGROUNDS) \
		--out $(BUILD)/detector_round1.pt --threads 2
	$(NICE) $(PY) -m train fit-detector --cache $(BUILD)/cache --import real --backgrounds $(BACKGROUNDS) \
		--finder $(BUILD)/detector_round1.pt --epochs 6 4 2 --out $(BUILD)/detector_round2.pt --threads 2 \
		--val-list $(BUILD)/detector_val.csv
	$(NICE) $(PY) -m train fit-detector --cache $(BUILD)/cache --import real scenes --backgrounds $(BACKGROUNDS) \
		--finder $(BUILD)/detector_round2.pt --init $(BUILD)/detector_round2.pt --epochs 3 2 2 --hard-repeat 3 \
		--out $(BUILD)/detector_round3.pt --threads 1
	$(NICE) $(PY) -m train fit-detector --cache $(BUILD)/cache --import real scenes --backgrounds $(BACKGROUNDS) \
		--finder $(BUILD)/detector_round3.pt --init $(BUILD)/detector_round3.pt --epochs 2 2 2 --hard-repeat 3 \
		--out $(DETECTOR_OUT) --threads 1 --val-scenes $(BUILD)/detector_val_scenes.csv

## The model card's held-out numbers: held-out real photos and synthetic incorrect masks over held-out people,
## pasted into 640x480 frames and run through the monitor's detect-crop-classify path.
demo-eval:
	$(NICE) $(PY) -m train evaluate-frames --checkpoint $(DEMO_OUT) --list $(BUILD)/cache/imports/real/holdout.csv \
		--root $(REAL) --incorrect $(BUILD)/synth-holdout/labels.csv --threads 1 --baseline-detection
	$(MAKE) demo-scenes

## The model card's scene numbers: the held-out quarter of the real scenes (their near-duplicate groups), each
## scaled to a 640-px-wide frame, through the monitor's detect-crop-classify path and from the annotated box.
demo-scenes:
	$(NICE) $(PY) -m train evaluate-scenes --checkpoint $(DEMO_OUT) --data $(SCENES) \
		--list $(BUILD)/cache/imports/scenes/holdout.csv --json $(BUILD)/scenes.json --threads 1

## The model card's honest check: train without obama3.jpg, evaluate on 40 synthetic people made from it.
demo-holdout:
	mkdir -p $(BUILD)/holdout
	grep -v '^obama3' samples/faces/labels.csv > $(BUILD)/holdout/train_labels.csv
	grep -E '^(file,|obama3)' samples/faces/labels.csv > $(BUILD)/holdout/eval_labels.csv
	$(PY) -m train synth $(SYNTH_ARGS) --labels $(BUILD)/holdout/train_labels.csv --out $(BUILD)/holdout/synth
	$(PY) -m train synth $(SYNTH_ARGS) --labels $(BUILD)/holdout/eval_labels.csv --out $(BUILD)/holdout/eval --seed 1
	$(PY) -m train prepare --data $(BUILD)/holdout/synth --out $(BUILD)/holdout/cache
	$(PY) -m train prepare --data $(BUILD)/holdout/eval --out $(BUILD)/holdout/eval_cache
	$(PY) -m train fit --data $(BUILD)/holdout/synth --cache $(BUILD)/holdout/cache --out $(BUILD)/holdout/run $(HOLDOUT_FIT_ARGS)
	$(PY) -m train evaluate --checkpoint $(BUILD)/holdout/run/best.pt --data $(BUILD)/holdout/eval \
		--cache $(BUILD)/holdout/eval_cache --split all --report $(BUILD)/holdout/report

## Regenerate samples/entrance.mp4 and samples/entrance_truth.json.
sample-video:
	$(PY) samples/make_entrance_video.py

## Benchmarks (print tables; run them on an otherwise idle machine).
bench:
	$(PY) -m train bench-engines --json $(BUILD)/bench-engines.json
	$(PY) -m monitor bench --video samples/entrance.mp4 --json $(BUILD)/bench-monitor.json
	$(PY) -m train bench-loader --data $(BUILD)/synth --cache $(BUILD)/cache

clean-demo:
	rm -rf $(BUILD)

## The demonstration of adapting to a door (docs/training.md, 'The demonstration'): needs demo-model's build/demo first.
demo-door:
	$(PY) -m train demo-door --base $(BUILD)/run/best.pt --photos $(BUILD)/cache/imports/real/holdout.csv \
		--incorrect $(BUILD)/synth-holdout/labels.csv --root $(REAL) --out build/door --threads 2
