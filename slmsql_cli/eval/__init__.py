"""`slmsql eval`: execution accuracy on Spider and BIRD question files, one idea per module.

- `questions.py`  the questions and the predictions, read from their files
- `metrics.py`    BIRD's set EX and Spider's test-suite execution match
- `hardness.py`   Spider's hardness levels, the Spider evaluator's rules
- `run.py`        predict, run gold and prediction (`targets.run_many`), score, record, resume
- `results.py`    the resumable JSONL results file, summaries and comparisons
- `chart.py`      `--plot`
"""
