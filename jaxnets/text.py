"""TextVectorization tokeniser in pure Python/NumPy (to be written)."""
