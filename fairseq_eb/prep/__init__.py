"""Data preparation: turn a corpus into ``DIR/raw/{train,valid,test}.{src,tgt}`` and then ``DIR/bin``.

Each preparer is a module run as ``python -m fairseq_eb.prep.<name>``: ``debian`` (the offline
default: Debian package descriptions -> synopsis), ``tsv`` (CSL / LCSTS style files) and
``binarize`` (SentencePiece + ``fairseq-preprocess``). All of them are idempotent.
"""
