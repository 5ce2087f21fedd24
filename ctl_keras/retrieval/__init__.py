"""Catalog retrieval: the product-embedding index and exact per-category inner-product search."""
