"""What the boards' links deliver, journaled first and handed over to the processing."""
