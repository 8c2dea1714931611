"""Question-bank loaders: public benchmark files in their published layouts -> ``Question`` records.

    from mede2_plugin.data import load_bank
    from mede2_plugin.core.questions import write_questions
    result = load_bank("US/test.jsonl", "medqa")          # LoadResult
    result.questions, result.rejected, result.skipped      # accepted / bad rows / left out on purpose
    write_questions("banks/medqa_test.jsonl", result.questions)

Bad rows never stop a load: each becomes a :class:`Rejected` with file, record (line or row) and
reason, returned beside the questions; ``load_bank(..., strict=True)`` raises :class:`BankError`
listing them instead. A file that cannot be read at all raises :class:`BankError`.
Formats live in :data:`FORMATS`; add one with :func:`register_format`.
"""

from mede2_plugin.data.bank import load_question_bank
from mede2_plugin.data.common import BankError, LoadResult, Rejected
from mede2_plugin.data.generic import load_generic
from mede2_plugin.data.medbullets import load_medbullets
from mede2_plugin.data.medqa import load_medqa
from mede2_plugin.data.medxpertqa import load_medxpertqa, strip_answer_choices
from mede2_plugin.data.mmmu import HEALTH_SUBJECTS, load_mmmu, load_mmmu_pro
from mede2_plugin.data.registry import FORMATS, load_bank, register_format

register_format("medqa", load_medqa)
register_format("medbullets", load_medbullets)
register_format("medxpertqa", load_medxpertqa)
register_format("mmmu", load_mmmu)
register_format("mmmu_pro", load_mmmu_pro)
register_format("generic", load_generic)
register_format("bank", load_question_bank)

__all__ = ["FORMATS", "HEALTH_SUBJECTS", "BankError", "LoadResult", "Rejected", "load_bank",
           "load_generic", "load_medbullets", "load_medqa", "load_medxpertqa", "load_mmmu",
           "load_mmmu_pro", "load_question_bank", "register_format",
           "strip_answer_choices"]
