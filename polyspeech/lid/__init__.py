"""Language identification: our conformer LID heads and MMS-LID (:mod:`polyspeech.lid.model`),
and the training of a head on a frozen base (:mod:`polyspeech.lid.train`)."""
