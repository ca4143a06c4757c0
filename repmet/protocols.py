"""The evaluation protocols a data set can be split under (issue 17; spec, "Unseen classes").

- ``closed-set``: every class is in train, validation and test; the examples are split. The
  seed's table and every result before the protocol existed are of this kind.
- ``class-disjoint``: train, validation and test classes are disjoint ("A Metric Learning Reality
  Check", Musgrave et al., ECCV 2020): the test split measures classes the network never saw.

Kept free of torch and numpy, so that the configuration and the command lines can name the
protocols without loading either.
"""

from __future__ import annotations

CLOSED_SET = "closed-set"
CLASS_DISJOINT = "class-disjoint"
#: Every protocol, the default first.
PROTOCOLS: tuple[str, ...] = (CLOSED_SET, CLASS_DISJOINT)
#: Folds of the class-disjoint validation classes: fold f validates on the f-th contiguous quarter
#: of the train+val classes (the Reality Check's four folds).
FOLDS = 4
