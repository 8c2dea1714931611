"""The stage-neutral core every layer above builds on; it imports nothing else of the package.

Files and outputs (:mod:`.files`, :mod:`.locks`, :mod:`.jsonl`), the question record and its file
format (:mod:`.questions`), prompts and conversations (:mod:`.prompts`, :mod:`.chat_format`,
:mod:`.chat_template`), images (:mod:`.media`), settings and the stage-command plumbing
(:mod:`.settings`, :mod:`.stage_cli`), what a stage declares and reports (:mod:`.stage`,
:mod:`.steps`), reply readers (:mod:`.answers`, :mod:`.replies`), the redactor (:mod:`.redact`),
``dataset_info.json`` merges (:mod:`.dataset_info`) and the shipped resources (:mod:`.resources`).
"""
