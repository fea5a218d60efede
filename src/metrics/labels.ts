// The labels every sidelog metric of a component carries, in the shape Vector's component metrics use.
export const COMPONENT = ['component_kind', 'component_id'] as const

/** The source sidelog has today; its metrics carry the same labels as a sink's. */
export const HTTP_SOURCE = { component_kind: 'source', component_id: 'http' } as const

export const sinkLabels = (sink: string) => ({ component_kind: 'sink', component_id: sink })
