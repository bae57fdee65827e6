/* The model blob, linked in place (read, never copied): ALBERT_BLOB names the file. */
    .section .albert_blob, "a"
    .balign 16
    .global model_blob, model_blob_end
model_blob:
    .incbin ALBERT_BLOB
model_blob_end:
