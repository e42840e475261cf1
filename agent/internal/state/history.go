package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
)

// historyFile holds the last runs, newest last.
const historyFile = "history.json"

// AppendHistory adds a run record (any JSON value) to the bounded run
// history, keeping the newest max records.
func (s *Store) AppendHistory(record any, max int) error {
	data, err := json.Marshal(record)
	if err != nil {
		return fmt.Errorf("state: encode history record: %w", err)
	}
	runs, err := s.History()
	var corrupt *CorruptError
	if err != nil && !errors.As(err, &corrupt) {
		return err
	}
	runs = append(runs, data)
	if len(runs) > max {
		runs = runs[len(runs)-max:]
	}
	return s.WriteJSON(historyFile, runs)
}

// History returns the recorded runs, oldest first. A corrupt history is set
// aside and reported; the returned list is then empty.
func (s *Store) History() ([]json.RawMessage, error) {
	var runs []json.RawMessage
	err := s.ReadJSON(historyFile, &runs)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return runs, err
}
