//! SentencePiece unigram tokenizer with ALBERT's normalisation, `no_std` and allocation-free.
