"""Input data: image files and COCO-style annotation / detection files, validated into one-line errors."""
