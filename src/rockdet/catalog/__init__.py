"""Rock catalogs: the rocks of one image, their files (CSV, JSON, Parquet, COCO) and where a batch writes them."""
