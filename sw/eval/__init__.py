"""Evaluation: mask metrics (IoU, COCO mask AP) and the box-prompted segmentation benchmark."""
