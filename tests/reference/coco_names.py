#!/usr/bin/env python3
"""Writes torchvision's COCO category names, one per line, for the labels test to compare with."""
import argparse
import os

from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, help="folder to write coco_names.txt into")
    parser.add_argument("--stamp", required=True, help="file to touch when done")
    args = parser.parse_args()

    os.makedirs(args.out, exist_ok=True)
    names = FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"]
    with open(os.path.join(args.out, "coco_names.txt"), "w") as f:
        f.write("\n".join(names) + "\n")
    with open(args.stamp, "w") as f:
        f.write("ok\n")


if __name__ == "__main__":
    main()
