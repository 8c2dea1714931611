"""The human steps of the recipe: ``mede2 review``, a local web app to review caption-stripped
questions, audit the MMRP judge blind against people, and flag preference pairs.

* :mod:`mede2_plugin.core.review_log` - the reviews: append-only JSONL logs in the run's
  ``review/`` folder, and :mod:`mede2_plugin.core.review_decisions` - what the stages take from
  them (rewrite decisions, flagged pairs); both in core, since the stages apply them;
* :mod:`.run` - the files and items of a run or stage folder, and what may be shown;
* :mod:`.audit` - the judge-audit sample, the score export for ``mede2 agreement``;
* :mod:`.funnel` - entered / kept / dropped of every stage step, with the items;
* :mod:`.render` - the HTML of the views (every text escaped);
* :mod:`.app` - what each view shows and does (no Gradio);
* :mod:`.views`, :mod:`.server`, :mod:`.cli` - the Gradio views, serving, the command.

"""
