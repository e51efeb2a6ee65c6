"""anoncollect: record the life of anon_vma and anon_vma_chain objects."""
