"""What every real-dataset builder shares: the item a layout yields, decoding and face
cropping of one item, and the resumable, parallel build that writes TFDS array_record."""
