"""Reading and writing what users hand in and get back: audio, NeMo manifests, RTTM, recording ids,
and the storage (local or object store) they live on."""
