package legacy

import (
	"context"
	"fmt"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// Tool names.
const (
	ToolWhoami   = "whoami"
	ToolEcho     = "echo"
	ToolProgress = "progress"
	ToolAsk      = "ask"
	ToolSample   = "sample"
	ToolSleep    = "sleep"
)

// AskSchemaField is the one property of the form the ask tool sends: the
// client's answer must be {"answer": "<text>"}.
const AskSchemaField = "answer"

func (s *Server) addTools() {
	s.mcp.AddTool(mcp.NewTool(ToolWhoami,
		mcp.WithDescription("Returns the name of the replica that serves this session."),
	), s.whoami)

	s.mcp.AddTool(mcp.NewTool(ToolEcho,
		mcp.WithDescription("Returns its text argument."),
		mcp.WithString("text", mcp.Required(), mcp.Description("Text to return.")),
	), echo)

	s.mcp.AddTool(mcp.NewTool(ToolProgress,
		mcp.WithDescription("Sends `steps` notifications/progress for the call's progressToken, `delay_ms` apart, then returns \"done <steps>\"."),
		mcp.WithInteger("steps", mcp.DefaultNumber(3), mcp.Description("Number of progress notifications.")),
		mcp.WithInteger("delay_ms", mcp.DefaultNumber(20), mcp.Description("Delay before each notification, in milliseconds.")),
		mcp.WithInteger("settle_ms", mcp.DefaultNumber(defaultSettleMs), mcp.Description("Wait after the last notification before returning, in milliseconds (see the package doc).")),
	), s.progress)

	s.mcp.AddTool(mcp.NewTool(ToolAsk,
		mcp.WithDescription("Asks the client for a value with elicitation/create (form {\"answer\": string}) and returns the answer; \"declined\" or \"cancelled\" when the client did not accept."),
		mcp.WithString("message", mcp.DefaultString("What is your answer?"), mcp.Description("Message shown to the user.")),
		mcp.WithInteger("timeout_ms", mcp.DefaultNumber(0), mcp.Description("Give up after this long; 0 waits as long as the call lasts.")),
	), s.ask)

	s.mcp.AddTool(mcp.NewTool(ToolSample,
		mcp.WithDescription("Asks the client for a completion with sampling/createMessage and returns its text. mcp-go sends the question on the session's GET stream only."),
		mcp.WithString("prompt", mcp.DefaultString("Say something."), mcp.Description("User message sent to the client.")),
		mcp.WithInteger("timeout_ms", mcp.DefaultNumber(0), mcp.Description("Give up after this long; 0 waits as long as the call lasts.")),
	), s.sample)

	s.mcp.AddTool(mcp.NewTool(ToolSleep,
		mcp.WithDescription("Waits `ms` milliseconds (or until the call is cancelled), then returns \"slept <ms>\"."),
		mcp.WithInteger("ms", mcp.DefaultNumber(1000), mcp.Description("How long to wait, in milliseconds.")),
	), sleep)
}

func (s *Server) whoami(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	return mcp.NewToolResultText(s.name), nil
}

func echo(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	text, err := req.RequireString("text")
	if err != nil {
		return mcp.NewToolResultError(err.Error()), nil
	}
	return mcp.NewToolResultText(text), nil
}

func (s *Server) progress(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	steps := req.GetInt("steps", 3)
	delay := time.Duration(req.GetInt("delay_ms", 20)) * time.Millisecond
	var token mcp.ProgressToken
	if req.Params.Meta != nil {
		token = req.Params.Meta.ProgressToken
	}
	srv := server.ServerFromContext(ctx)
	for i := 1; i <= steps; i++ {
		if err := wait(ctx, delay); err != nil {
			return nil, err
		}
		if token == nil {
			continue
		}
		err := srv.SendNotificationToClient(ctx, string(mcp.MethodNotificationProgress), map[string]any{
			"progressToken": token,
			"progress":      i,
			"total":         steps,
			"message":       fmt.Sprintf("step %d of %d", i, steps),
		})
		if err != nil {
			return nil, fmt.Errorf("send progress %d: %w", i, err)
		}
	}
	if token != nil && steps > 0 {
		// Two mcp-go v1.2.1 traits make the last notifications race the
		// result: the POST stream's forwarder goroutine drops a notification
		// it took off the session's channel but had not written when the
		// handler returned; and while the client holds the GET stream, the GET
		// stream reads the same channel, so about half the notifications
		// travel there. Returning a moment after the last one lets them all
		// reach the client before the result.
		if err := wait(ctx, time.Duration(req.GetInt("settle_ms", defaultSettleMs))*time.Millisecond); err != nil {
			return nil, err
		}
	}
	return mcp.NewToolResultText(fmt.Sprintf("done %d", steps)), nil
}

// defaultSettleMs is how long the progress tool waits after its last
// notification before it returns.
const defaultSettleMs = 25

func (s *Server) ask(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	ctx, cancel := withOptionalTimeout(ctx, req.GetInt("timeout_ms", 0))
	defer cancel()
	res, err := server.ServerFromContext(ctx).RequestElicitation(ctx, mcp.ElicitationRequest{
		Params: mcp.ElicitationParams{
			Message: req.GetString("message", "What is your answer?"),
			RequestedSchema: map[string]any{
				"type": "object",
				"properties": map[string]any{
					AskSchemaField: map[string]any{"type": "string", "description": "Your answer"},
				},
				"required": []string{AskSchemaField},
			},
		},
	})
	if err != nil {
		return mcp.NewToolResultError("elicitation failed: " + err.Error()), nil
	}
	switch res.Action {
	case mcp.ElicitationResponseActionAccept:
		content, _ := res.Content.(map[string]any)
		answer, ok := content[AskSchemaField].(string)
		if !ok {
			return mcp.NewToolResultError(fmt.Sprintf("elicitation answer has no string %q: %v", AskSchemaField, res.Content)), nil
		}
		return mcp.NewToolResultText(answer), nil
	case mcp.ElicitationResponseActionDecline:
		return mcp.NewToolResultText("declined"), nil
	default:
		return mcp.NewToolResultText("cancelled"), nil
	}
}

func (s *Server) sample(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	ctx, cancel := withOptionalTimeout(ctx, req.GetInt("timeout_ms", 0))
	defer cancel()
	//lint:ignore SA1019 legacy-era sampling is what this replica exists to serve.
	res, err := server.ServerFromContext(ctx).RequestSampling(ctx, mcp.CreateMessageRequest{
		CreateMessageParams: mcp.CreateMessageParams{
			Messages: []mcp.SamplingMessage{{
				Role:    mcp.RoleUser,
				Content: mcp.NewTextContent(req.GetString("prompt", "Say something.")),
			}},
			SystemPrompt: "You are a test client.",
			MaxTokens:    64,
		},
	})
	if err != nil {
		return mcp.NewToolResultError("sampling failed: " + err.Error()), nil
	}
	switch c := res.Content.(type) {
	case mcp.TextContent:
		return mcp.NewToolResultText(c.Text), nil
	case *mcp.TextContent:
		return mcp.NewToolResultText(c.Text), nil
	default:
		return mcp.NewToolResultError(fmt.Sprintf("sampling answer is not text: %T", res.Content)), nil
	}
}

func sleep(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	ms := req.GetInt("ms", 1000)
	if err := wait(ctx, time.Duration(ms)*time.Millisecond); err != nil {
		return nil, err
	}
	return mcp.NewToolResultText(fmt.Sprintf("slept %d", ms)), nil
}

func wait(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func withOptionalTimeout(ctx context.Context, ms int) (context.Context, context.CancelFunc) {
	if ms <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, time.Duration(ms)*time.Millisecond)
}
