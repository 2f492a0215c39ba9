"""The line engineer's tools, without Qt (the GUI's engineer panels and history search call them).

Modules:
    prompt_preview   PromptDraft (the editable prompts) and preview_prompts (zero-shot scores, live vs draft)
    threshold        threshold_estimate (false-reject / escape rates of a threshold), slider_range
    samples          SampleStore: a line's few-shot folder (add, list, delete), listed by ``walk_fewshot``
    search           query_embedding / record_model: the query of a CLIP search of the audit log
"""
