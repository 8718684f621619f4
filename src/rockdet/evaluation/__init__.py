"""How good a detector and its catalogs are: COCO metrics, catalog quality against labels and dense masks, the operating point."""
