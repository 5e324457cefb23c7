%% The Erlang side of `make demo`: talks to a kdist node over TLS
%% distribution and prints what happened. Exits with status 0 when every
%% step worked, 1 otherwise.
-module(kdist_demo).
-export([main/1]).

main([KdistNode]) ->
    K = list_to_atom(KdistNode),
    register(demo_inbox, self()),
    Steps = [fun() -> ping(K) end,
             fun() -> echo(K) end,
             fun() -> sink(K) end,
             fun() -> from_kdist() end],
    Ok = lists:all(fun(Step) -> Step() end, Steps),
    %% `kdist send` confirms each message with a ping after it, so stay up
    %% long enough to answer the ping that follows 'done'.
    timer:sleep(2000),
    halt(case Ok of true -> 0; false -> 1 end).

say(Fmt, Args) ->
    io:format("erl: " ++ Fmt ++ "~n", Args).

ping(K) ->
    Result = net_adm:ping(K),
    say("net_adm:ping(~p) -> ~p", [K, Result]),
    Result =:= pong.

%% Round trips erl -> kdist -> erl through the kdist node's echo process.
echo(K) ->
    Terms = [hello, 42, -7, 3.25, <<"bin">>, <<0:(64*1024*8)>>,
             {nested, [1, 2, {3, "four"}], #{key => value}},
             self(), make_ref(), 'atom_with_ünïcode', lists:seq(1, 300)],
    N = 1000,
    Times = [echo_one(K, lists:nth(I rem length(Terms) + 1, Terms))
             || I <- lists:seq(1, N)],
    Bad = [T || T <- Times, T =:= error],
    Sorted = lists:sort([T || T <- Times, T =/= error]),
    case Bad of
        [] ->
            say("echo: ~p round trips erl -> kdist -> erl, every term "
                "came back equal; median ~p us, p99 ~p us",
                [N, lists:nth(N div 2, Sorted),
                 lists:nth(N * 99 div 100, Sorted)]),
            true;
        _ ->
            say("echo: ~p of ~p round trips failed", [length(Bad), N]),
            false
    end.

echo_one(K, Term) ->
    T0 = erlang:monotonic_time(microsecond),
    {echo, K} ! {self(), {echo_reply, Term}},
    receive
        {echo_reply, Term} -> erlang:monotonic_time(microsecond) - T0
    after 5000 -> error
    end.

sink(K) ->
    N = 20000,
    Payload = <<0:(1024*8)>>,
    T0 = erlang:monotonic_time(microsecond),
    [{sink, K} ! Payload || _ <- lists:seq(1, N)],
    {sink, K} ! {self(), stats},
    receive
        {sink_stats, Msgs, Bytes} ->
            Us = max(1, erlang:monotonic_time(microsecond) - T0),
            say("sink: kdist counted ~p messages, ~p bytes "
                "(~p msgs/s one way, 1 KiB each)",
                [Msgs, Bytes, Msgs * 1000000 div Us]),
            Msgs >= N
    after 30000 ->
        say("sink: no stats answer within 30 s", []),
        false
    end.

%% Waits for the messages the shell script sends with `kdist send`, and
%% echoes each back to the sender's node as proof of arrival.
from_kdist() ->
    say("waiting for messages from kdist", []),
    from_kdist(0).

from_kdist(Count) ->
    receive
        done ->
            say("received ~p messages from kdist", [Count]),
            Count > 0;
        Msg ->
            say("received from kdist: ~p", [Msg]),
            from_kdist(Count + 1)
    after 60000 ->
        say("no message from kdist within 60 s", []),
        false
    end.
