"""The audit trail: who changed what (the trail), from where (middleware), when (signals)."""
