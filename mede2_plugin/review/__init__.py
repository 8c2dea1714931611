"""The human steps of the recipe: ``mede2 review``, a local web app to review caption-stripped
questions, audit the MMRP judge blind against people, and flag preference pairs.

* :mod:`.store` - the reviews: append-only JSONL logs in the run's ``review/`` folder;
* :mod:`.decisions` - what the stages take from them (rewrite decisions, flagged pairs);
* :mod:`.run` - the files and items of a run or stage folder, and what may be shown;
* :mod:`.audit` - the judge-audit sample, the score export for ``mede2 agreement``;
* :mod:`.funnel` - entered / kept / dropped of every stage step, with the items;
* :mod:`.render` - the HTML of the views (every text escaped);
* :mod:`.app` - what each view shows and does (no Gradio);
* :mod:`.views`, :mod:`.server`, :mod:`.cli` - the Gradio views, serving, the command.

Importing this package imports nothing else (stages import :mod:`.decisions` cheaply).
"""
