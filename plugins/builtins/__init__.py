"""The plugins every gateway ships, written against the same public interface as any other."""
