"""The Firebase CLI test's harness: the machine's emulators and the JS SDK client."""
