"""The design card's common module: thresholds, models, collections, errors,
roles, the edge decorators and the Firestore/Redis client factories shared by
every ``pack391_*`` function."""
