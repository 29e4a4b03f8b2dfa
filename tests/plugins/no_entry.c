/* Fixture: a shared object that is not a hostlet plugin (no entry symbol). */
int hostlet_fixture_not_a_plugin(void);
__attribute__((visibility("default"))) int hostlet_fixture_not_a_plugin(void) { return 42; }
