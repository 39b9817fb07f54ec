"""Datasets for neurall-neuro: layouts, the generated cohort, splits, duplicates, preprocessing.

Import from the sub-modules (kept small, one concept each):

* :mod:`~neurall_neuro.data.records` -- ``ImageRecord``, ``Cohort``
* :mod:`~neurall_neuro.data.layouts` -- ``load_cohort``, ``detect_layout``, ``map_labels``
* :mod:`~neurall_neuro.data.synth` -- ``generate_cohort`` (synthetic images, no clinical meaning)
* :mod:`~neurall_neuro.data.splits` -- ``make_split``, ``Split``, ``groups_from_duplicates``
* :mod:`~neurall_neuro.data.dedup` -- ``check_duplicates``, ``find_duplicate_pairs``
* :mod:`~neurall_neuro.data.preprocess` -- ``Preprocessing``, ``ROBUSTNESS_TRANSFORMS``
* :mod:`~neurall_neuro.data.stain` -- HED stain augmentation, Macenko stain normalisation
* :mod:`~neurall_neuro.data.dataset` -- ``ImageDataset`` (torch)
* :mod:`~neurall_neuro.data.scan` -- ``scan_images``
* :mod:`~neurall_neuro.data.imageio` -- ``decode_rgb`` (the one image reader)
* :mod:`~neurall_neuro.data.shared_data` -- ``shared_data_dir`` (locates ../shared/data)
"""
