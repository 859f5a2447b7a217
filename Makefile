# Developer shortcuts. The README's two quick-start commands need none of this.
PY ?= .venv/bin/python
BUILD ?= build/demo
# ImageNet weights for the demo model: torchvision downloads them once; offline, point TORCH_HOME at a copy.
export TORCH_HOME ?= $(if $(wildcard ../shared/weights/torch-hub),$(abspath ../shared/weights/torch-hub),$(HOME)/.cache/torch)
export NO_ALBUMENTATIONS_UPDATE = 1

# The demo model's recipe (see samples/MODEL_CARD.md): 200 synthetic people from the 5 bundled photos.
DEMO_OUT ?= samples/demo_model.onnx
SYNTH_ARGS = --faces samples/faces --variants 40 --seed 0
FIT_ARGS = --epochs 6 --input-height 128 --input-width 96 --batch-size 32 --num-workers 0 --weighted-sampler --seed 42

.PHONY: install test demo-model demo-holdout sample-video bench clean-demo

install:
	python3 -m venv .venv && .venv/bin/pip install -e '.[dev]'

test:
	$(PY) -m pytest

## Rebuild samples/demo_model.onnx from scratch: synth -> prepare -> fit -> evaluate -> export.
demo-model:
	$(PY) -m train synth $(SYNTH_ARGS) --labels samples/faces/labels.csv --out $(BUILD)/synth
	$(PY) -m train prepare --data $(BUILD)/synth --out $(BUILD)/cache
	$(PY) -m train fit --data $(BUILD)/synth --cache $(BUILD)/cache --out $(BUILD)/run $(FIT_ARGS)
	$(PY) -m train evaluate --checkpoint $(BUILD)/run/best.pt --data $(BUILD)/synth --cache $(BUILD)/cache
	$(PY) -m train export-onnx --checkpoint $(BUILD)/run/best.pt --out $(DEMO_OUT)

## The model card's honest check: train without obama3.jpg, evaluate on 40 synthetic people made from it.
demo-holdout:
	mkdir -p $(BUILD)/holdout
	grep -v '^obama3' samples/faces/labels.csv > $(BUILD)/holdout/train_labels.csv
	grep -E '^(file,|obama3)' samples/faces/labels.csv > $(BUILD)/holdout/eval_labels.csv
	$(PY) -m train synth $(SYNTH_ARGS) --labels $(BUILD)/holdout/train_labels.csv --out $(BUILD)/holdout/synth
	$(PY) -m train synth $(SYNTH_ARGS) --labels $(BUILD)/holdout/eval_labels.csv --out $(BUILD)/holdout/eval --seed 1
	$(PY) -m train prepare --data $(BUILD)/holdout/synth --out $(BUILD)/holdout/cache
	$(PY) -m train prepare --data $(BUILD)/holdout/eval --out $(BUILD)/holdout/eval_cache
	$(PY) -m train fit --data $(BUILD)/holdout/synth --cache $(BUILD)/holdout/cache --out $(BUILD)/holdout/run $(FIT_ARGS)
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
