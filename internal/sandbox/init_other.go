//go:build !linux

package sandbox

import "errors"

func enter(*Spec) error { return errors.New("the built-in sandbox needs Linux") }

// LandlockABI is 0 off Linux.
func LandlockABI() int { return 0 }
