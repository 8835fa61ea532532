"""Where the picker learns its pools: Kubernetes list/watch (`kube`) or an objects file (`files`), both reduced to a
`PickerView` by the pure `view.build_view`."""
