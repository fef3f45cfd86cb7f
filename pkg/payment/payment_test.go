package payment

import (
	"errors"
	"testing"
)

func TestTransition(t *testing.T) {
	t.Parallel()
	tests := []struct {
		from, to    Status
		wantChanged bool
		wantErr     bool
	}{
		{StatusAccepted, StatusProcessing, true, false},
		{StatusAccepted, StatusSucceeded, true, false},
		{StatusAccepted, StatusFailed, true, false},
		{StatusProcessing, StatusSucceeded, true, false},
		{StatusProcessing, StatusUnknown, true, false},
		{StatusUnknown, StatusSucceeded, true, false},
		{StatusUnknown, StatusFailed, true, false},
		{StatusSucceeded, StatusSucceeded, false, false},
		{StatusProcessing, StatusProcessing, false, false},
		{StatusProcessing, StatusAccepted, false, true},
		{StatusSucceeded, StatusFailed, false, true},
		{StatusFailed, StatusSucceeded, false, true},
		{StatusSucceeded, StatusProcessing, false, true},
		{StatusUnknown, StatusProcessing, false, true},
		{Status("bogus"), StatusSucceeded, false, true},
	}
	for _, tt := range tests {
		t.Run(string(tt.from)+"->"+string(tt.to), func(t *testing.T) {
			t.Parallel()
			changed, err := Transition(tt.from, tt.to)
			if changed != tt.wantChanged {
				t.Errorf("changed = %v, want %v", changed, tt.wantChanged)
			}
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrInvalidTransition) {
				t.Errorf("err = %v, want ErrInvalidTransition", err)
			}
		})
	}
}

func TestValidateAmount(t *testing.T) {
	t.Parallel()
	tests := []struct {
		amount  int64
		wantErr bool
	}{
		{0, true},
		{1, false},
		{-1, false},
		{MaxAbsAmount, false},
		{-MaxAbsAmount, false},
		{MaxAbsAmount + 1, true},
		{-MaxAbsAmount - 1, true},
	}
	for _, tt := range tests {
		if err := ValidateAmount(tt.amount); (err != nil) != tt.wantErr {
			t.Errorf("ValidateAmount(%d) = %v, wantErr %v", tt.amount, err, tt.wantErr)
		}
	}
}

func TestRequestHashDistinguishesFields(t *testing.T) {
	t.Parallel()
	a := RequestHash(1, 23, 4)
	if a != RequestHash(1, 23, 4) {
		t.Fatal("hash is not deterministic")
	}
	if a == RequestHash(12, 3, 4) || a == RequestHash(1, 23, -4) {
		t.Fatal("hash does not separate fields")
	}
}
