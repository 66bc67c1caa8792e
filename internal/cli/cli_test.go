package cli

import (
	"context"
	"errors"
	"testing"
)

// fakeApp records what StartApp did with it.
type fakeApp struct {
	startErr          error
	started, shutdown bool
}

func (a *fakeApp) Start() error                       { a.started = true; return a.startErr }
func (a *fakeApp) Shutdown(ctx context.Context) error { a.shutdown = true; return nil }

func TestStartApp(t *testing.T) {
	errNew, errStart := errors.New("new failed"), errors.New("start failed")
	tests := []struct {
		name                      string
		app                       *fakeApp
		newErr                    error
		wantErr                   error
		wantStarted, wantShutdown bool
	}{
		{"starts", &fakeApp{}, nil, nil, true, false},
		{"constructor error", &fakeApp{}, errNew, errNew, false, false},
		{"start error shuts down", &fakeApp{startErr: errStart}, nil, errStart, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc, err := StartApp(tt.app, tt.newErr)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if (svc != nil) != (tt.wantErr == nil) {
				t.Errorf("service = %v with err %v", svc, err)
			}
			if tt.app.started != tt.wantStarted || tt.app.shutdown != tt.wantShutdown {
				t.Errorf("started %v, shut down %v; want %v, %v", tt.app.started, tt.app.shutdown, tt.wantStarted, tt.wantShutdown)
			}
		})
	}
}
