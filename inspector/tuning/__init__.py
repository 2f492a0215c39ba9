"""The line engineer's tools, without Qt: prompt drafts and previews, threshold estimates, the few-shot sample store."""
