/**
 * The parts of an engine step whose time the engine reports (EngineStatus `<phase>Seconds`): what
 * tells a speedup's own cost apart from the model's. Its own module, free of llama.cpp, so that
 * the main thread (metrics, benchmarks) can name them without loading the binding.
 */
export const STEP_PHASES = ['scheduling', 'batching', 'decoding', 'accepting'] as const;
export type StepPhase = (typeof STEP_PHASES)[number];
