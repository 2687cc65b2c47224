//! `amarvote referendum …`: the referendum pipeline's commands.
