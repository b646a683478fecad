"""Evaluate rank1 as a reranker on standard IR collections (the engine of ``rank1 eval``).

* :mod:`.io` reads queries, corpora, runs and qrels (and writes TREC runs);
* :mod:`.metrics` computes nDCG@10, MAP, Recall@k and MRR through pytrec_eval;
* :mod:`.runner` reranks a first-stage run through ``Rank1Client``;
* :mod:`.report` builds the printed and ``--json`` report;
* :mod:`.irds` reads collections through ir_datasets (optional).

The resumable judgment store is :class:`rank1_integrations.store.JudgmentStore`.
"""
