"""The capture folder (``KTL_CAPTURE_DIR``): live predictions kept for monitoring,
feedback and review. It owns the folder's layout, its records, which predictions
are kept (``KTL_CAPTURE`` rules), the per-minute cap and the disk budget. It imports
only from ``models``; the service writes through it, the command line and training
may read it."""
